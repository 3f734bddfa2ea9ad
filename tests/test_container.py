"""The Apptainer image definition and its build scripts, checked without apptainer.

Apptainer cannot be installed here, so a wrong definition would only show up hours into a
cluster build, or as array tasks that fail on every node: these tests read the definition with
a strict parser and hold it to pyproject.toml and to how the driver runs tasks in the image.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from laerebogen.config.loading import load_config
from laerebogen.launch.slurm import container_python
from tests.support.apptainer_def import Definition, parse_definition, read_definition
from tests.support.paths import REPOSITORY

DEFINITION = REPOSITORY / "containers" / "laerebogen.def"
SBATCH = REPOSITORY / "slurm" / "build-container.sbatch"
MINIMAL = "Bootstrap: docker\nFrom: debian:12\n\n%post\n    true\n"


@pytest.fixture(scope="module")
def definition() -> Definition:
    return read_definition(DEFINITION)


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPOSITORY / "pyproject.toml").read_text(encoding="utf-8"))


def script_lines(body: str) -> list[str]:
    """A section's commands: stripped lines without blanks and comments."""
    lines = (line.strip() for line in body.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def gpu_vllm_pin(pyproject: dict) -> str:
    """The exact vLLM version of pyproject's ``gpu`` extra, which the image's tag must equal."""
    extra = pyproject["project"]["optional-dependencies"]["gpu"]
    pins = [match for req in extra if (match := re.fullmatch(r"vllm\s*==\s*([\w.]+)", req))]
    assert len(pins) == 1, f"the gpu extra should pin vllm exactly once: {extra}"
    return pins[0].group(1)


# -- the parser ------------------------------------------------------------------------------


def test_parser_reads_header_sections_and_helpers() -> None:
    text = (
        "Bootstrap: docker\nFrom: debian:12\n\n%arguments\n    COMMIT=unknown\n"
        "%files\n    a.txt /opt/a.txt\n    b.txt\n%labels\n    version 1.0\n"
        "    revision {{ COMMIT }}\n%post -c /bin/bash\n    echo hi\n"
    )
    parsed = parse_definition(text)
    assert parsed.header == {"Bootstrap": "docker", "From": "debian:12"}
    assert set(parsed.sections) == {"arguments", "files", "labels", "post"}
    assert parsed.files() == [("a.txt", "/opt/a.txt"), ("b.txt", "b.txt")]
    assert parsed.labels() == {"version": "1.0", "revision": "{{ COMMIT }}"}
    assert parsed.arguments() == {"COMMIT": "unknown"}
    assert parsed.template_variables() == {"COMMIT"}
    assert parsed.section_args["post"] == "-c /bin/bash"
    assert script_lines(parsed.sections["post"]) == ["echo hi"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("From: debian:12\n%post\n    true\n", r"line 1: .*Bootstrap"),
        ("# only a comment\n\n%post\n    true\n", r"no 'Bootstrap:' line"),
        ("Bootstrap: docker\n%post\n    true\n", r"no 'From:' line"),
        (MINIMAL + "%pots\n    true\n", r"line 6: unknown section %pots"),
        (MINIMAL + "%help\n    one\n%post\n    false\n", r"line 8: duplicate section %post"),
        (MINIMAL + "From: debian:13\n", r"line 6: header line 'From: debian:13' after"),
        (MINIMAL + "Bootstrap: docker\n", r"line 6: header line"),
        (MINIMAL + "%appinstall foo\n    true\n", r"line 6: %appinstall: .*not supported"),
        ("Bootstrap: docker\nFrom debian:12\n", r"line 2: expected 'Keyword: value'"),
        ("Bootstrap: docker\nBootstrap: library\nFrom: x\n", r"line 2: duplicate header"),
        ("Bootstrap: docker\nFrom:\n", r"line 2: expected 'Keyword: value'"),
        ("Bootstrap: docker\nFrom: x\n%\n", r"line 3: malformed section line"),
    ],
)
def test_parser_rejects(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_definition(text)


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ("%files\n    a b c\n", r"line 7: %files: expected 'source \[destination\]'"),
        ("%labels\n    version\n", r"line 7: %labels: label 'version' has no value"),
        ("%labels\n    v 1\n    v 2\n", r"line 8: %labels: duplicate label 'v'"),
        ("%arguments\n    not an argument\n", r"line 7: %arguments: expected NAME=value"),
    ],
)
def test_parser_helpers_name_the_bad_line(section: str, error: str) -> None:
    parsed = parse_definition(MINIMAL + section)
    helper = {"files": parsed.files, "labels": parsed.labels, "arguments": parsed.arguments}
    with pytest.raises(ValueError, match=error):
        helper[section.split(maxsplit=1)[0].lstrip("%")]()


def test_parser_accepts_the_real_definition(definition: Definition) -> None:
    required = {"arguments", "files", "post", "environment", "runscript", "test", "labels", "help"}
    assert required <= set(definition.sections)


# -- the real definition ---------------------------------------------------------------------


def test_base_image_is_the_vllm_image_pinned_in_pyproject(
    definition: Definition, pyproject: dict
) -> None:
    assert definition.header["Bootstrap"] == "docker"
    match = re.fullmatch(r"vllm/vllm-openai:v(\d+\.\d+\.\d+)", definition.header["From"])
    assert match, f"From must be vllm/vllm-openai with an exact vX.Y.Z tag: {definition.header}"
    assert match.group(1) == gpu_vllm_pin(pyproject)


def test_files_bring_exactly_the_project_sources(definition: Definition, pyproject: dict) -> None:
    sources = [source for source, _ in definition.files()]
    for source in sources:
        assert (REPOSITORY / source).exists(), f"%files source {source} is not in the repository"
    package = "laerebogen"
    assert pyproject["tool"]["setuptools"]["packages"]["find"]["include"] == [f"{package}*"]
    assert sorted(sources) == sorted(["pyproject.toml", pyproject["project"]["readme"], package])
    for source, destination in definition.files():
        assert destination == f"/opt/laerebogen/{source}", "the project's layout must be kept"


def install_commands(post: str) -> list[re.Match[str]]:
    pattern = (
        r"python3 -m pip install (?P<options>[^\"/]*)\"(?P<path>/[^\"\[]+)\[(?P<extras>[^\]]*)\]\""
    )
    return list(re.finditer(pattern, post))


def test_post_installs_the_gpu_extra_from_what_files_brings(definition: Definition) -> None:
    post = definition.sections["post"]
    installs = install_commands(post)
    assert len(installs) == 1, "%post should install the project once, with its gpu extra"
    install = installs[0]
    extras = {extra.strip() for extra in install["extras"].split(",")}
    assert "gpu" in extras
    assert "dev" not in extras and "cpu" not in extras
    assert not re.search(r"(^|\s)(-e|--editable)(\s|$)", install["options"])
    assert "--no-cache-dir" in install["options"]
    destinations = [PurePosixPath(destination) for _, destination in definition.files()]
    assert PurePosixPath(install["path"]) / "pyproject.toml" in destinations

    for used in re.findall(r"/opt/laerebogen[^\s\"'\[\]]*", post):
        path = PurePosixPath(used)
        brought = any(
            path == destination or destination in path.parents or path in destination.parents
            for destination in destinations
        )
        assert brought, f"%post uses {used}, which %files does not bring"


def test_post_makes_the_driver_interpreter_import_laerebogen(definition: Definition) -> None:
    # submitit runs each task as `apptainer exec ... <image> python`: that `python` must be the
    # interpreter the project was installed into, and the build must fail if it is not.
    config = load_config("tiny", ["container.image=/images/laerebogen.sif"])
    interpreter = (container_python(config, Path("/runs/x")) or "").split()[-1]
    assert interpreter == "python"
    checks = [
        line
        for line in script_lines(definition.sections["post"])
        if line.startswith(f'{interpreter} -c "import laerebogen')
    ]
    assert checks, f"%post must end by importing laerebogen with `{interpreter}`"


def environment_names(body: str) -> tuple[dict[str, str], set[str]]:
    """Assignments (name -> value) and every variable name a line sets or reads."""
    assigned: dict[str, str] = {}
    names: set[str] = set()
    for line in script_lines(body):
        for match in re.finditer(r"(?:^|[;\s])(?:export\s+)?([A-Za-z_]\w*)=(\S*)", line):
            assigned[match.group(1)] = match.group(2)
            names.add(match.group(1))
        names.update(re.findall(r"\$\{?([A-Za-z_]\w*)", line))
    return assigned, names


def test_environment_is_offline_private_and_per_task(definition: Definition) -> None:
    assigned, names = environment_names(definition.sections["environment"])
    assert assigned["HF_HUB_OFFLINE"] == "1"
    assert assigned["TRANSFORMERS_OFFLINE"] == "1"
    assert assigned["VLLM_NO_USAGE_STATS"] == "1"
    cache = assigned["VLLM_CACHE_ROOT"]
    assert cache.startswith('"${TMPDIR'), f"VLLM_CACHE_ROOT must be under TMPDIR: {cache}"
    assert "SLURM_JOB_ID" in cache, "one cache per task: concurrent tasks corrupt a shared one"
    secret = [n for n in names if re.search("TOKEN|KEY|SECRET|PASSWORD", n, re.IGNORECASE)]
    assert not secret, f"no secrets in the image's environment: {secret}"


def test_runscript_runs_the_package_entry_point(definition: Definition) -> None:
    assert script_lines(definition.sections["runscript"]) == ['exec python3 -m laerebogen "$@"']
    assert importlib.util.find_spec("laerebogen.__main__") is not None


def test_test_section_runs_doctor(definition: Definition) -> None:
    commands = script_lines(definition.sections["test"])
    assert any(re.search(r"\blaerebogen doctor\b", command) for command in commands), commands


def test_labels_carry_the_version_and_the_commit(definition: Definition, pyproject: dict) -> None:
    labels = definition.labels()
    assert labels["org.opencontainers.image.version"] == pyproject["project"]["version"]
    assert labels["org.opencontainers.image.revision"] == "{{ GIT_COMMIT }}"
    # Apptainer fails a build on a {{ NAME }} without a value: every one needs a default.
    assert definition.template_variables() <= set(definition.arguments())
    assert definition.arguments()["GIT_COMMIT"] == "unknown"


def test_help_says_how_to_build_and_use_it(definition: Definition) -> None:
    text = definition.sections["help"]
    for needed in ("container.image", "make container", "build-container.sbatch", "1.2", "--nv"):
        assert needed in text, needed


# -- the build scripts -----------------------------------------------------------------------


def stub_tools(directory: Path) -> Path:
    """Stand-ins for apptainer (records its arguments, writes the image) and git."""
    directory.mkdir()
    (directory / "apptainer").write_text(
        '#!/bin/bash\nprintf "%s\\n" "$*" >> "$APPTAINER_CALLS"\n'
        'if [[ "$1" == build ]]; then echo sif > "${@: -2:1}"; fi\n',
        encoding="utf-8",
    )
    (directory / "git").write_text("#!/bin/bash\necho 0123abcd\n", encoding="utf-8")
    for tool in directory.iterdir():
        tool.chmod(0o755)
    return directory


def make(
    *arguments: str, path: str, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    make_binary = shutil.which("make")
    assert make_binary, "make is needed"
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/root"), **(extra or {})}
    return subprocess.run(
        [make_binary, "--no-print-directory", *arguments, "VENV=.venv"],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_make_container_shows_the_apptainer_build() -> None:
    result = make("-n", "container", path="/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    build = [line for line in result.stdout.splitlines() if line.startswith("apptainer build")]
    assert len(build) == 1, result.stdout
    assert "--build-arg GIT_COMMIT=" in build[0]
    assert build[0].endswith('"containers/laerebogen.sif" containers/laerebogen.def')
    assert "pip" not in result.stdout, "make container must not install anything"


def test_make_container_without_apptainer_fails_in_one_line(tmp_path: Path) -> None:
    # An empty PATH directory: apptainer is certainly missing even where /usr/bin has it.
    result = make("container", path=str(tmp_path))
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert len(ours) == 1 and "apptainer is not on PATH" in ours[0], result.stderr
    assert result.stdout == "", "nothing else (no install) may run"


def test_make_container_builds_into_image(tmp_path: Path) -> None:
    stubs = stub_tools(tmp_path / "bin")
    calls = tmp_path / "calls"
    image = tmp_path / "images" / "x.sif"
    image.parent.mkdir()
    result = make(
        "container",
        f"IMAGE={image}",
        path=f"{stubs}:/usr/bin:/bin",
        extra={"APPTAINER_CALLS": str(calls)},
    )
    assert result.returncode == 0, result.stderr
    fakeroot = [] if os.getuid() == 0 else ["--fakeroot"]
    expected = ["build", *fakeroot, "--build-arg", "GIT_COMMIT=0123abcd", str(image)]
    assert calls.read_text().split() == [*expected, "containers/laerebogen.def"]
    assert image.read_text() == "sif\n"


def test_build_container_sbatch_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(SBATCH)], check=True, timeout=30)
    text = SBATCH.read_text(encoding="utf-8")
    assert re.search(r"^#SBATCH --output=logs/build-container-%j\.out$", text, re.MULTILINE)
    assert not re.search(r"^#SBATCH --(gpus|gres)", text, re.MULTILINE), "a CPU job"


def test_build_container_sbatch_builds_then_moves_into_place(tmp_path: Path) -> None:
    stubs = stub_tools(tmp_path / "bin")
    calls = tmp_path / "calls"
    image = tmp_path / "new" / "dir" / "laerebogen.sif"
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "APPTAINER_CALLS": str(calls),
        "SLURM_SUBMIT_DIR": str(REPOSITORY),
        "SLURM_JOB_ID": "77",
        "TMPDIR": str(tmp_path),
    }
    result = subprocess.run(
        ["bash", str(SBATCH), str(image)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    build = calls.read_text().splitlines()[-1].split()
    fakeroot = [] if os.getuid() == 0 else ["--fakeroot"]
    partial = f"{image}.partial-77"
    assert build == [
        "build",
        *fakeroot,
        "--build-arg",
        "GIT_COMMIT=0123abcd",
        partial,
        "containers/laerebogen.def",
    ]
    assert image.read_text() == "sif\n"
    assert not Path(partial).exists()
