"""``python -m minimlops`` and the ``minimlops`` command run the command line.

Nothing is imported at the top. A process started with ``spawn`` (the training
process, an extra serving process) runs its parent's main module again, and the
``minimlops`` command's script imports this module at its top: the command line
(typer, rich, the settings; ~0.2 s) is imported only in the process it runs in.
"""


def run() -> None:
    from minimlops.entrypoints.cli.main import main

    main()


if __name__ == "__main__":
    run()
