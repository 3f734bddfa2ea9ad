"""``python -m laerebogen`` runs the same CLI as the ``laerebogen`` console script."""

from laerebogen.cli import main

if __name__ == "__main__":
    main()
