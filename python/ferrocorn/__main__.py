"""Console script and ``python -m ferrocorn``: hand argv to the Rust entry point."""
import sys


def main():
    from ferrocorn._ferrocorn import run

    sys.exit(run(sys.argv))


if __name__ == "__main__":
    main()
