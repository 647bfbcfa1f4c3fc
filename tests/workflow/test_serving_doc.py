"""docs/serving.md as written: every curl request of the page, sent to ``rsn2 serve`` of the model the
README's walkthrough trains, answers with the names, shapes and labels the page shows (the walkthrough
test serves that model and calls :func:`check_every_request_of_the_page`)."""

import base64
import json
import re
import shlex
from pathlib import Path

from tests.deploy.server_process import call

ROOT = Path(__file__).resolve().parents[2]


def doc_requests() -> list[tuple[str, dict, dict]]:
    """``(url path, request body, answer shown)`` for each curl block of docs/serving.md."""
    text = (ROOT / "docs" / "serving.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```\s*```json\n(.*?)```", text, flags=re.S)
    out = []
    for command, answer in blocks:
        variables = dict(re.findall(r"^(\w+)=\$\(base64 -w0 (\S+)\)$", command, flags=re.M))
        line = next(line for line in command.splitlines() if line.startswith("curl "))
        for name, path in variables.items():  # the shell's quoting around the substitution, resolved
            line = line.replace(f"'\"${name}\"'", base64.b64encode((ROOT / path).read_bytes()).decode())
        argv = shlex.split(line)
        url = next(a for a in argv if a.startswith("localhost:8000"))
        body = json.loads(argv[argv.index("-d") + 1])
        out.append((url.removeprefix("localhost:8000"), body, json.loads(answer)))
    return out


def test_the_page_has_a_request_for_every_task_kind():
    paths = [p for p, _, _ in doc_requests()]
    assert {p.split("/")[3] for p in paths} == {"species", "progression", "review", "digit", "auto"}


def check_every_request_of_the_page(base: str) -> None:
    """Send each request of docs/serving.md to the server at ``base`` (serving the model the README's
    walkthrough trains: tests/workflow/test_readme_walkthrough.py calls this) and compare the answer's
    names, datatypes, shapes and labels with the page's."""
    for path, body, shown in doc_requests():
        status, answer = call(base + path, body)
        assert status == 200, answer
        assert answer["model_name"] == shown["model_name"]
        for got, want in zip(answer["outputs"], shown["outputs"], strict=True):
            assert {k: got[k] for k in ("name", "datatype", "shape")} == {
                k: want[k] for k in ("name", "datatype", "shape")
            }
            if want["name"] in ("label", "task"):
                assert got["data"] == want["data"], path
