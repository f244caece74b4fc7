"""``cifarkit completion SHELL``: the shell code that completes cifarkit's commands,
options, shipped recipe names and recipe files, generated from the argparse parser by
argcomplete (the completions themselves come from ``cifarkit`` at each Tab press)."""

from __future__ import annotations

from cifarkit.cli import options

SHELLS = ("bash", "zsh", "fish")

INSTALL = """\
bash:  echo 'eval "$(cifarkit completion bash)"' >> ~/.bashrc
zsh:   echo 'eval "$(cifarkit completion zsh)"' >> ~/.zshrc
fish:  cifarkit completion fish > ~/.config/fish/completions/cifarkit.fish"""


def arguments(parser) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def main(args) -> int:
    import argcomplete

    print(argcomplete.shellcode(["cifarkit"], shell=args.shell), end="")
    return 0


COMMAND = options.Command(
    "completion", main, "print shell completion code (bash, zsh, fish)", arguments,
    description="Print the code that makes SHELL complete cifarkit's commands, options, "
                "shipped recipe names and recipe files. Install it once:",
    epilog=INSTALL)
