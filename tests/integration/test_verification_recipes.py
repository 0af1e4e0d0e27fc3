"""The README's verification recipes, run against real answers of the server.

Each recipe is extracted from README.md (the fenced block after `<!-- recipe: NAME -->`), so
what the README shows is what runs here. A small harness per language calls the recipe on
every case and prints true/false; the verdicts must be the expected ones. Python, JavaScript
(node), Java (javac/java 15+) and Go are run; Go is installed from Debian (`golang-go`) when
missing, as the browser tests install chromium. C# is not run: .NET is not in Debian."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.integration.client_support import Client
from tests.integration.helpers import activation_body, create_license, set_clock

README = Path(__file__).resolve().parents[2] / "README.md"
Headers = dict[str, str]


def recipe(name: str) -> str:
    match = re.search(
        rf"<!-- recipe: {name} -->\n```\w+\n(.*?)\n```", README.read_text(), flags=re.DOTALL
    )
    assert match, f"README.md has no recipe {name}"
    return match.group(1) + "\n"


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    header: str
    nonce: str
    run: bool  # what the recipe must answer


async def _answer(public: Client, key: str, nonce: str) -> tuple[bytes, str]:
    response = await public.post("/v1/activations", json=activation_body(key, nonce=nonce))
    assert response.status == 200
    return await response.read(), response.headers["X-Signature"]


@pytest.fixture
async def cases(public_client: Client, admin_client: Client, admin_headers: Headers) -> list[Case]:
    key = (await create_license(admin_client, admin_headers))["key"]
    body, header = await _answer(public_client, key, "n-1")
    other = Ed25519PrivateKey.generate().sign(body)
    disabled = (await create_license(admin_client, admin_headers))["key"]
    await admin_client.post(f"/admin/v1/licenses/{disabled}/disable", json={"reason": "x"},
                            headers=admin_headers)  # fmt: skip
    refused, refused_header = await _answer(public_client, disabled, "n-3")
    await set_clock(admin_client, admin_headers, "2025-01-01T00:00:00Z")
    old, old_header = await _answer(public_client, key, "n-2")  # valid_until 2025-01-08
    return [
        Case("genuine", body, header, "n-1", True),
        Case("another nonce", body, header, "n-9", False),
        Case("tampered", body.replace(b'"servers_active":1', b'"servers_active":0'), header,
             "n-1", False),
        Case("refused", refused, refused_header, "n-3", False),
        Case("expired", old, old_header, "n-2", False),
        Case("unpinned key", body, "ed25519=" + base64.b64encode(other).decode(), "n-1", False),
    ]  # fmt: skip


def _write(cases: list[Case], directory: Path) -> None:
    directory.mkdir(parents=True)
    for number, case in enumerate(cases):
        (directory / f"{number}.body").write_bytes(case.body)
        (directory / f"{number}.header").write_text(case.header)
        (directory / f"{number}.nonce").write_text(case.nonce)


async def _public_key(public: Client) -> str:
    key: str = (await (await public.get("/v1/signing-key")).json())["public_key"]
    return key


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _python(work: Path, key: str, count: int) -> str:
    namespace: dict[str, Any] = {}
    exec(compile(recipe("python"), "README.md (python recipe)", "exec"), namespace)
    verdicts = []
    for n in range(count):
        body, header = (work / f"{n}.body").read_bytes(), (work / f"{n}.header").read_text()
        nonce = (work / f"{n}.nonce").read_text()
        verdicts.append(str(namespace["license_ok"](body, header, key, nonce)).lower())
    return "\n".join(verdicts)


JS_HARNESS = """const fs = require("node:fs");
const { licenseOk } = require("./recipe.js");
const [dir, key, count] = process.argv.slice(2);
for (let n = 0; n < Number(count); n++) {
  const read = (ext) => fs.readFileSync(`${dir}/${n}.${ext}`);
  console.log(licenseOk(read("body"), read("header").toString(), key, read("nonce").toString()));
}
"""

JAVA_HARNESS = """import java.nio.file.*;

public class Harness {
    public static void main(String[] args) throws Exception {
        for (int n = 0; n < Integer.parseInt(args[2]); n++) {
            Path dir = Path.of(args[0]);
            System.out.println(LicenseCheck.licenseOk(Files.readAllBytes(dir.resolve(n + ".body")),
                Files.readString(dir.resolve(n + ".header")), args[1],
                Files.readString(dir.resolve(n + ".nonce"))));
        }
    }
}
"""

GO_HARNESS = """package main

import (
	"fmt"
	"os"
	"strconv"

	"recipe/license"
)

func main() {
	count, _ := strconv.Atoi(os.Args[3])
	for n := 0; n < count; n++ {
		read := func(ext string) []byte {
			data, _ := os.ReadFile(fmt.Sprintf("%s/%d.%s", os.Args[1], n, ext))
			return data
		}
		header, nonce := string(read("header")), string(read("nonce"))
		fmt.Println(license.LicenseOK(read("body"), header, os.Args[2], nonce))
	}
}
"""


def _javascript(work: Path, key: str, count: int) -> str:
    if shutil.which("node") is None:
        pytest.fail("node is needed for the JavaScript recipe (Debian: apt-get install nodejs)")
    (work / "recipe.js").write_text(recipe("javascript"))
    (work / "harness.js").write_text(JS_HARNESS)
    return _run(["node", "harness.js", str(work / "cases"), key, str(count)], work)


def _java(work: Path, key: str, count: int) -> str:
    if shutil.which("javac") is None:
        pytest.fail("javac 15+ is needed for the Java recipe (Debian: default-jdk-headless)")
    (work / "LicenseCheck.java").write_text(recipe("java"))
    (work / "Harness.java").write_text(JAVA_HARNESS)
    _run(["javac", "-d", "classes", "LicenseCheck.java", "Harness.java"], work)
    return _run(["java", "-cp", "classes", "Harness", str(work / "cases"), key, str(count)], work)


def _go(work: Path, key: str, count: int) -> str:
    go = _install_go()
    (work / "go.mod").write_text("module recipe\n\ngo 1.19\n")
    (work / "license").mkdir()
    (work / "license" / "license.go").write_text(recipe("go"))
    (work / "main.go").write_text(GO_HARNESS)
    env = os.environ | {
        "HOME": str(work), "GOCACHE": str(work / "gocache"), "GOPATH": str(work / "gopath"),
        "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local",
    }  # fmt: skip
    return _run([go, "run", ".", str(work / "cases"), key, str(count)], work, env)


def _install_go() -> str:
    """`go`, installed from Debian (`golang-go`) when missing."""
    found = shutil.which("go")
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.fail("the Go recipe needs `go`, and there is no apt-get to install it")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "golang-go"]
    done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=900)
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    found = shutil.which("go")
    if found is None:
        pytest.fail(f"could not install golang-go (run as root?):\n{done.stderr[-2000:]}")
    return found


LANGUAGES = {"python": _python, "javascript": _javascript, "java": _java, "go": _go}


# `cases` holds an answer from a past moment, one the recipes must refuse as expired.
@pytest.mark.moves_clock
@pytest.mark.parametrize("language", list(LANGUAGES))
async def test_the_readme_recipe_accepts_exactly_the_genuine_answer(
    language: str, cases: list[Case], public_client: Client, tmp_path: Path
) -> None:
    key = await _public_key(public_client)
    await asyncio.to_thread(_write, cases, tmp_path / "cases")
    run = LANGUAGES[language]
    printed = await asyncio.to_thread(run, tmp_path if language != "python" else tmp_path / "cases",
                                      key, len(cases))  # fmt: skip
    verdicts = dict(zip([c.name for c in cases], printed.split(), strict=True))
    expected = {case.name: str(case.run).lower() for case in cases}
    assert verdicts == expected


def test_every_language_of_the_readme_is_tested_or_said_untested() -> None:
    names = re.findall(r"<!-- recipe: (\w+) -->", README.read_text())
    assert sorted(names) == sorted([*LANGUAGES, "csharp"])
    csharp = re.search(r"^C# .*$", README.read_text(), flags=re.MULTILINE)
    assert csharp and "**untested**" in csharp.group(0)
