"""`ansible-test sanity` on the project's module, offline.

ansible-test wants a collection: the module is staged into a throwaway
`ansible_collections/refstack/farm`. Each sanity test runs in a venv ansible-test makes
without pip; it bootstraps pip with a get-pip script it downloads from a host this machine
cannot reach, then installs its pinned requirements from PyPI. Here both come from a
wheelhouse built once from PyPI into the cache, and the bootstrap script is a stand-in that
runs pip from its own wheel (what get-pip does). ansible-test's HOME (its venvs, the script)
is kept in the cache too, so a second session reuses the venvs; nothing reaches the network
once the wheelhouse exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
PIP_VERSION = "24.2"  # ansible-core 2.19's ansible-test bootstraps this pip

_GET_PIP = '''\
"""Offline stand-in for get-pip.py {version}: pip runs from its wheel and installs itself."""
import sys

sys.path.insert(0, {wheel!r})
from pip._internal.cli.main import main  # noqa: E402

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--no-index", "--find-links", {wheels!r}, *args]))
'''


def requirement_files() -> list[Path]:
    import ansible_test

    data = Path(ansible_test.__file__).parent / "_data" / "requirements"
    return sorted(data.glob("sanity.*.txt"))


def wheelhouse(cache: Path) -> Path:
    """pip and every sanity test's pinned requirements as wheels (downloaded once)."""
    import ansible

    out = cache / f"ansible-test-wheels-{ansible.__version__}"
    if (out / ".complete").exists():
        return out
    part = out.with_name(out.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    reqs = [arg for path in requirement_files() for arg in ("-r", str(path))]
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(part),
                    "--index-url", "https://pypi.org/simple", f"pip=={PIP_VERSION}", *reqs],
                   check=True, env=env)
    (part / ".complete").touch()
    shutil.rmtree(out, ignore_errors=True)
    part.rename(out)
    return out


def stage(module: Path, root: Path) -> Path:
    """A collection holding only `module`; returns its directory."""
    coll = root / "ansible_collections" / "refstack" / "farm"
    (coll / "plugins" / "modules").mkdir(parents=True)
    shutil.copy2(module, coll / "plugins" / "modules" / module.name)
    (coll / "galaxy.yml").write_text(
        "namespace: refstack\nname: farm\nversion: 0.1.0\nreadme: README.md\n"
        "authors: [refstack-farm]\n")
    (coll / "README.md").write_text("A throwaway collection for ansible-test sanity.\n")
    (coll / "meta").mkdir()
    (coll / "meta" / "runtime.yml").write_text("---\nrequires_ansible: '>=2.19.0'\n")
    return coll


def sanity(coll: Path, cache: Path, *tests: str) -> subprocess.CompletedProcess[str]:
    """Run the sanity tests named (default: every one that applies), offline."""
    wheels = wheelhouse(cache)
    home = cache / "ansible-test-home"
    script = home / ".ansible" / "test" / "cache" / f"get_pip_{PIP_VERSION.replace('.', '_')}.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    pip_wheel = next(wheels.glob(f"pip-{PIP_VERSION}-*.whl"))
    script.write_text(_GET_PIP.format(version=PIP_VERSION, wheel=str(pip_wheel),
                                      wheels=str(wheels)))
    # ansible-test hands its pip nothing from the environment but HOME: pip's user config
    # there points it at the wheelhouse
    pip_conf = home / ".config" / "pip" / "pip.conf"
    pip_conf.parent.mkdir(parents=True, exist_ok=True)
    pip_conf.write_text(f"[global]\nno-index = true\nfind-links = {wheels}\n"
                        "disable-pip-version-check = true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "ANSIBLE_"))}
    env.update(HOME=str(home), PATH=f"{BIN}:{os.environ['PATH']}")
    return subprocess.run([str(BIN / "ansible-test"), "sanity", "--python",
                           f"{sys.version_info.major}.{sys.version_info.minor}", "--color", "no",
                           *(arg for name in tests for arg in ("--test", name))],
                          cwd=coll, env=env, capture_output=True, text=True, timeout=1200)
