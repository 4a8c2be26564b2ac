"""Documentation stays true to the repository: links resolve, every `blocksight` command and
flag the docs show exists in the binary, and the paths the deployment guide names exist."""
import functools
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
DEPLOY_GUIDE = REPO / "docs" / "deploy.md"

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
# [text](target "title") and ![alt](target); reference definitions "[id]: target".
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|//)", re.I)
# A `blocksight` invocation: at the start of a code line or span, or after a pipe, `$(`, `;`,
# `&&`; `cargo run [--release] --` stands for the binary too.
INVOCATION = re.compile(
    r"(?:^|[|;(&]\s*|\$\s+)(?:blocksight|cargo run(?: --release)? --)\s+([^|;&#)\n]*)", re.M
)
REPO_PATH = re.compile(r"(?<![\w./-])((?:charts|argocd|terraform|examples)/[\w./<>*@-]*)")


def code_and_prose(text: str) -> tuple[list[str], str]:
    """Code (fenced blocks and inline spans) and the prose left once code is removed."""
    code = [m.group(0) for m in FENCE.finditer(text)]
    prose = FENCE.sub("", text)
    code += [m.group(2) for m in INLINE_CODE.finditer(prose)]
    return code, INLINE_CODE.sub("", prose)


def relative_links(text: str) -> list[str]:
    _, prose = code_and_prose(text)
    targets = INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)
    return [t for t in targets if not EXTERNAL.match(t) and not t.startswith("#")]


def broken_links(doc: Path) -> list[str]:
    broken = []
    for target in relative_links(doc.read_text()):
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(REPO) or not path.exists():
            broken.append(target)
    return broken


def invocations(text: str) -> list[list[str]]:
    """The argument words of every `blocksight ...` command line in the code of `text`."""
    code, _ = code_and_prose(text)
    found = []
    for block in code:
        for line in block.splitlines():
            for match in INVOCATION.finditer(line.strip()):
                found.append(match.group(1).split())
    return found


@functools.cache
def help_text(binary: Path, *command: str) -> str:
    proc = subprocess.run([str(binary), *command, "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"blocksight {' '.join(command)} --help failed:\n{proc.stderr}"
    return proc.stdout


def subcommands(help_output: str) -> set[str]:
    section = help_output.split("Commands:", 1)
    if len(section) == 1:
        return set()
    body = section[1].split("\n\n", 1)[0]
    return {line.split()[0] for line in body.splitlines() if line.strip()}


def unknown_in_invocation(binary: Path, words: list[str]) -> list[str]:
    """Subcommands and long flags of one invocation that `--help` does not list."""
    command: list[str] = []
    unknown = []
    for word in words:
        if word.startswith("-") or not re.fullmatch(r"[a-z][a-z0-9-]*", word):
            break
        available = subcommands(help_text(binary, *command))
        if not available:
            break  # a positional argument or value of a leaf command
        if word not in available:
            unknown.append(f"blocksight {' '.join([*command, word])}")
            return unknown
        command.append(word)
    if not command:
        return unknown
    flags = set(re.findall(r"--[a-z][a-z0-9-]*", help_text(binary, *command)))
    for word in words[len(command):]:
        flag = word.split("=", 1)[0].strip("[]")
        if flag.startswith("--") and flag not in flags:
            unknown.append(f"blocksight {' '.join(command)} {flag}")
    return unknown


def missing_paths(text: str) -> list[str]:
    """Paths under charts/, argocd/, terraform/, examples/ named in code that match no file.
    Placeholders such as <env> match any single path segment."""
    code, _ = code_and_prose(text)
    missing = []
    for block in code:
        for raw in REPO_PATH.findall(block):
            path = raw.rstrip(".,:;")
            pattern = re.sub(r"<[^>/]*>", "*", path).rstrip("/")
            if not any(REPO.glob(pattern)):
                missing.append(path)
    return sorted(set(missing))


# ------------------------------------------------------------------ the checks themselves


def test_the_checks_can_fail():
    sample = (
        "See [ok](deploy.md), [gone](nope/missing.md#x), [web](https://example.org), [top](#a).\n"
        "`blocksight render -f x.yaml` and `blocksight rendr`.\n"
        "```sh\nblocksight crd | kubectl apply -f -\ncat argocd/apps/nope.yaml argocd/environments/<env>/config.yaml\n```\n"
        "Not code: blocksight frobnicate, argocd/nothing-here.\n"
    )
    assert relative_links(sample) == ["deploy.md", "nope/missing.md#x"]
    assert invocations(sample) == [["crd"], ["render", "-f", "x.yaml"], ["rendr"]]
    assert missing_paths(sample) == ["argocd/apps/nope.yaml"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc):
    assert not broken_links(doc), f"{doc.relative_to(REPO)}: broken links {broken_links(doc)}"


def test_blocksight_commands_in_docs_exist(blocksight_bin):
    assert subcommands(help_text(blocksight_bin)) >= {"run", "render", "crd"}, "could not parse `blocksight --help`"
    unknown = [
        f"{doc.relative_to(REPO)}: {what}"
        for doc in DOCS
        for words in invocations(doc.read_text())
        for what in unknown_in_invocation(blocksight_bin, words)
    ]
    assert not unknown, "commands or flags the binary does not have:\n" + "\n".join(unknown)


def test_unknown_commands_and_flags_are_reported(blocksight_bin):
    assert unknown_in_invocation(blocksight_bin, ["rendr"]) == ["blocksight rendr"]
    assert unknown_in_invocation(blocksight_bin, ["render", "-f", "x", "--colour"]) == ["blocksight render --colour"]
    assert unknown_in_invocation(blocksight_bin, ["run", "--leader-election=false"]) == []


def test_deploy_guide_paths_exist():
    text = DEPLOY_GUIDE.read_text()
    assert REPO_PATH.search(text), "the deployment guide names no repository path: extraction is broken"
    assert not missing_paths(text), f"docs/deploy.md names paths that do not exist: {missing_paths(text)}"
