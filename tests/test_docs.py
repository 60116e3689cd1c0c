"""The documentation says what the tools do: marked command blocks of README.md and docs/*.md are run, and
what they print is compared with what the page shows; every relative link and anchor resolves.

A block is run when the line before its opening fence is a marker (an HTML comment, invisible on GitHub
and on the package page)::

    <!-- docs-test -->
    <!-- docs-test: exports=alex,alex-spatial,vgg vary=elapsed_s,pairs_per_s setup="scorer = Scorer('alex')" -->

Shell blocks (```text or ```sh): lines starting with ``$ `` are commands, run in order by one bash in a
fresh folder holding a copy of examples/; the lines after a command, up to the next ``$ ``, are its
output, stdout and stderr together in the order written (the tools write unbuffered here). A line
``...`` stands for any number of lines. ``vary=KEY,...``: a shown line holding ``"KEY":`` is compared
up to the value (timings). Python blocks: each top-level statement runs in one namespace (after
``setup``); an expression statement followed by a comment (on its last line, or comment-only lines
after it) must have that ``repr``, and any other statement followed by such comments must print those
lines (for example ``print(x)  # 0.5``). Whitespace is not compared in Python blocks (numpy pads).

``exports=``: the session's exports (``tests/conftest.py``), linked into ./models, which is also
``$LPIPS_RT_MODELS``, so no block exports anything (an alex export takes 10-60 s). Names: a net, then
``-spatial`` and/or ``-<metric>``s (``alex-psnr-ssim``); ``alex-split``: every graph the feature cache
uses; ``alex-frames``: lpips-video's uint8 RGB frame graph.
``needs=MODULE,...``: skipped where a module (an extra) is not installed.

This checks that the pages are true to the tools; that the tools' numbers are right is checked against
the official package by the parity tests.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!-- docs-test(?::(.*))? -->$")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    options: dict

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def marked_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").split("\n")
    blocks, i = [], 0
    while i < len(lines):
        marker = MARKER.match(lines[i])
        if marker and i + 1 < len(lines) and FENCE.match(lines[i + 1]):
            lang = FENCE.match(lines[i + 1]).group(1)
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            options = dict(item.split("=", 1) for item in shlex.split(marker.group(1) or ""))
            blocks.append(Block(page, i + 2, lang, "\n".join(lines[i + 2:end]), options))
            i = end
        i += 1
    return blocks


BLOCKS = [block for page in PAGES for block in marked_blocks(page)]


def test_pages_have_marked_blocks():
    """The marker syntax is what the pages use: a typo in it would silently test nothing."""
    assert any(b.page.name == "README.md" for b in BLOCKS) and len(BLOCKS) >= 5
    for page in PAGES:
        for n, line in enumerate(page.read_text(encoding="utf-8").split("\n"), 1):
            if "docs-test" in line and line.startswith("<!--"):
                assert MARKER.match(line), f"{page.name}:{n}: malformed marker {line!r}"


def _export_args(name: str) -> dict:
    net, *flags = name.split("-")
    spatial = "spatial" in flags
    return {"net": net, "spatial": spatial, "metrics": tuple(f for f in flags if f != "spatial")}


@pytest.fixture
def folder(tmp_path, exported, request):
    """A working folder with examples/ (images and scripts) and ./models holding the block's exports."""
    block: Block = request.param
    for module in filter(None, block.options.get("needs", "").split(",")):
        pytest.importorskip(module, reason=f"{block.name} needs {module}")
    (tmp_path / "examples").mkdir()
    for f in (ROOT / "examples").iterdir():
        if f.is_file():
            shutil.copy2(f, tmp_path / "examples" / f.name)
    models = tmp_path / "models"
    models.mkdir()
    for name in filter(None, block.options.get("exports", "").split(",")):
        if name.endswith("-split"):  # fused, spatial, encoder and heads: what the feature cache looks up
            sources = sorted(request.getfixturevalue("split_models")(name.split("-")[0]).iterdir())
        elif name.endswith("-frames"):  # the uint8 RGB frame graph lpips-video uses for 8-bit video
            from lpips_runtime.model.modelfile import ModelSpec

            sources = [request.getfixturevalue("exported_spec")(ModelSpec(name.split("-")[0], frames="nhwc-rgb"))]
        else:
            sources = [exported(**_export_args(name))]
        for source in sources:
            if not (models / source.name).exists():
                try:
                    os.link(source, models / source.name)
                except OSError:
                    shutil.copy2(source, models / source.name)
    return tmp_path, block


def _env(folder: Path) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", LPIPS_RT_MODELS=str(folder / "models"), COLUMNS="200")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this interpreter's tools
    return env


def _matches(shown: list[str], got: list[str], vary: set[str]) -> bool:
    """``shown`` (with ``...`` lines) against ``got``, in order."""
    if not shown:
        return not got
    head, rest = shown[0], shown[1:]
    if head == "...":
        return any(_matches(rest, got[k:], vary) for k in range(len(got) + 1))
    if not got:
        return False
    key = next((k for k in vary if f'"{k}":' in head), None)
    same = got[0].startswith(head[:head.index(f'"{key}":') + len(key) + 3]) if key else got[0] == head
    return same and _matches(rest, got[1:], vary)


def _shell_steps(text: str) -> list[tuple[str, list[str]]]:
    steps = []
    for line in text.split("\n"):
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"output before the first command: {line!r}")
    for _, shown in steps:
        while shown and not shown[-1].strip():
            shown.pop()
    return steps


SEPARATOR = "@@docs-test-step@@"


def _run_shell(block: Block, folder: Path) -> None:
    steps = _shell_steps(block.text)
    script = ["exec 2>&1", "__rc=0"]
    for command, _ in steps:
        script += [f"( exit $__rc ); {command}", "__rc=$?", f"echo {SEPARATOR}"]
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=folder, env=_env(folder), capture_output=True,
                          text=True, timeout=120)
    outputs = done.stdout.split(f"{SEPARATOR}\n")
    assert len(outputs) == len(steps) + 1, done.stdout
    vary = set(filter(None, block.options.get("vary", "").split(",")))
    for (command, shown), got in zip(steps, outputs):
        got_lines = got.split("\n")[:-1] if got else []
        assert _matches(shown, got_lines, vary), (
            f"{block.name}: `{command}` printed\n" + got + "\nbut the page shows\n" + "\n".join(shown))


RUNNER = r'''
import ast, contextlib, io, json, sys, tokenize
source, setup = sys.argv[1], sys.argv[2]
ns = {}
exec(setup, ns)
lines = source.split("\n")
comments = {t.start[0]: t.string[1:].strip() for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type == tokenize.COMMENT}
tree = ast.parse(source)
report = []
for k, stmt in enumerate(tree.body):
    stop = tree.body[k + 1].lineno if k + 1 < len(tree.body) else len(lines) + 1
    expected = [comments[stmt.end_lineno]] if stmt.end_lineno in comments else []
    for n in range(stmt.end_lineno + 1, stop):
        if lines[n - 1].strip().startswith("#"):
            expected.append(comments[n])
    is_print = (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
                and getattr(stmt.value.func, "id", "") == "print")
    out = io.StringIO()
    if isinstance(stmt, ast.Expr) and not is_print:
        value = eval(compile(ast.Expression(stmt.value), "<docs>", "eval"), ns)
        got = repr(value)
    else:
        with contextlib.redirect_stdout(out):
            exec(compile(ast.Module([stmt], []), "<docs>", "exec"), ns)
        got = out.getvalue()
    if expected and not isinstance(stmt, (ast.Assign, ast.Import, ast.ImportFrom, ast.With)):
        report.append({"line": stmt.lineno, "expected": "\n".join(expected), "got": got.rstrip("\n")})
print(json.dumps(report))
'''


def _run_python(block: Block, folder: Path) -> None:
    done = subprocess.run([sys.executable, "-c", RUNNER, block.text, block.options.get("setup", "")], cwd=folder,
                          env=_env(folder), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{block.name}: {done.stderr}"
    report = json.loads(done.stdout.strip().split("\n")[-1])
    assert report, f"{block.name}: no statement with an expected value"
    squeeze = lambda s: re.sub(r"\s+", "", s)  # noqa: E731
    for check in report:
        assert squeeze(check["got"]) == squeeze(check["expected"]), (
            f"{block.name}, statement at line {check['line']}: got\n{check['got']}\nbut the page shows\n"
            f"{check['expected']}")


@pytest.mark.parametrize("folder", BLOCKS, ids=[b.name for b in BLOCKS], indirect=True)
def test_marked_block_prints_what_the_page_shows(folder):
    path, block = folder
    if block.lang == "python":
        _run_python(block, path)
    else:
        _run_shell(block, path)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out, fence = set(), False
    for line in page.read_text(encoding="utf-8").split("\n"):
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#+ ", line):
            out.add(re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path) if path else page
        assert resolved.exists(), f"{page.name}: link to {target}: no such file"
        if anchor:
            assert anchor in _anchors(resolved), f"{page.name}: link to {target}: no such heading"


def test_readme_is_short_and_the_index_links_every_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.split("\n")) <= 300
    assert "make demo" in readme and "make test" in readme  # the two commands (CI runs `make test`)
    assert "](docs/index.md)" in readme
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "index.md":  # a new page is reachable: listed in the index (README links the main ones)
            assert f"]({page.name}" in index, f"docs/index.md does not link {page.name}"
