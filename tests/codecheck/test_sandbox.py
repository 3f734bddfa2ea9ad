"""The sandbox: outcomes of ordinary blocks, and hostile blocks contained in every isolation
mode this machine has (root in CI has all three)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from laerebogen.codecheck.sandbox import HARNESS, Block, Ran, Sandbox, supports
from laerebogen.config.schema import CodeCheck

ISOLATIONS = ["namespaces", "user-namespace", "none"]
LIMITS = CodeCheck(timeout_seconds=2.0, cpu_seconds=1, memory_mb=512)


@pytest.fixture(params=ISOLATIONS)
def sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Sandbox:
    """A sandbox of each isolation mode, hiding a run directory of the test's."""
    if not supports(request.param):
        pytest.skip(f"this machine has no {request.param} sandbox")
    (tmp_path / "run").mkdir()
    return Sandbox(LIMITS, hide=[tmp_path / "run"], isolation=request.param)


def python(*codes: str) -> list[Block]:
    return [Block("python", code) for code in codes]


def harness_processes() -> Iterator[int]:
    """Processes still running the harness (none should outlive their sandbox)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(HARNESS).encode() in (entry / "cmdline").read_bytes():
                    yield int(entry.name)
            except OSError:
                continue


def test_blocks_of_a_message_share_definitions_and_each_gets_its_outcome(
    sandbox: Sandbox,
) -> None:
    results = sandbox.run(
        python(
            "def dobbelt(x):\n    return 2 * x",
            "assert dobbelt(21) == 42",
            "def (:",
            "print(ukendt)",
            "import sys\nsys.exit(0)",
            "import sys\nsys.exit(3)",
            "navn = input('Hvad hedder du? ')",
            "import numpy_findes_ikke",
            "open('data.csv').read()",
            "with open('ud.txt', 'w') as f:\n    f.write('ok')\n"
            "assert open('ud.txt').read() == 'ok'",
        )
    )
    assert results == [
        Ran("ok"),
        Ran("ok"),
        Ran("syntax_error", "SyntaxError: line 1"),
        Ran("exception", "NameError"),
        Ran("ok"),
        Ran("exception", "SystemExit"),
        Ran("not_verifiable", "needs input"),
        Ran("not_verifiable", "needs module numpy_findes_ikke"),
        Ran("not_verifiable", "needs files"),
        Ran("ok"),  # its own working directory is writable
    ]


def test_sql_blocks_share_one_in_memory_database(sandbox: Sandbox) -> None:
    results = sandbox.run(
        [
            Block(
                "sql",
                "CREATE TABLE by (navn TEXT, indbyggere INT);\n"
                "INSERT INTO by VALUES ('Aarhus', 290000);",
            ),
            Block("sql", "SELECT navn FROM by WHERE indbyggere > 100000;"),
            Block("sql", "SELEC navn FROM by;"),
            Block("sql", "SELECT * FROM kunder;"),
            Block("sql", "INSERT INTO by VALUES ('Odense');"),
        ]
    )
    assert [result.outcome for result in results] == [
        "ok", "ok", "syntax_error", "not_verifiable", "exception",
    ]  # fmt: skip
    assert results[3].detail.startswith("needs its own tables")


def test_a_block_past_its_time_is_a_timeout_and_the_rest_are_not_run(sandbox: Sandbox) -> None:
    results = sandbox.run(python("x = 1", "import time\ntime.sleep(60)", "y = 2"))
    assert results == [
        Ran("ok"),
        Ran("timeout", "over 2 s"),
        Ran("not_verifiable", "not run: an earlier block ended the process"),
    ]
    assert not list(harness_processes())


def patient(sandbox: Sandbox) -> Sandbox:
    """``sandbox`` with a timeout long enough for the CPU limit to come first, even on a
    machine busy with other tests."""
    settings = msgspec.structs.replace(LIMITS, timeout_seconds=20.0)
    return Sandbox(settings, isolation=sandbox.isolation)


def test_a_busy_loop_is_stopped_by_the_cpu_limit(sandbox: Sandbox) -> None:
    results = patient(sandbox).run(python("while True:\n    pass", "x = 1"))
    assert results == [  # 1 CPU second, before the timeout
        Ran("resource_limit", "CPU time"),
        Ran("not_verifiable", "not run: an earlier block ended the process"),
    ]


def test_work_inside_one_call_is_killed_at_the_hard_cpu_limit(sandbox: Sandbox) -> None:
    """A C call that never returns to Python does not hear SIGXCPU: the hard limit, a CPU
    second later, kills the process (a PID namespace hides by which signal)."""
    (result,) = patient(sandbox).run(
        python("import hashlib\nhashlib.pbkdf2_hmac('sha256', b'kode', b'salt', 10**9)")
    )
    assert result.outcome == "resource_limit"
    assert result.detail in ("killed", "killed by SIGKILL")


def test_an_exit_the_code_asks_for_is_its_outcome_not_a_kill(sandbox: Sandbox) -> None:
    results = sandbox.run(python("import os\nos._exit(0)", "import os\nos._exit(2)"))
    assert results == [Ran("ok"), Ran("exception", "SystemExit")]


def test_memory_bombs_hit_the_memory_limit(sandbox: Sandbox) -> None:
    results = sandbox.run(
        python(
            "blok = bytearray(8 * 1024**3)",
            "dele = []\nwhile True:\n    dele.append(' ' * 10**7)",
            "print('videre')",
        )
    )
    assert results == [
        Ran("resource_limit", "memory"),
        Ran("resource_limit", "memory"),
        Ran("ok"),
    ]


def test_a_fork_bomb_and_a_shell_start_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    marker = tmp_path / "shell-was-here"
    results = sandbox.run(
        python(
            "import os\nwhile True:\n    os.fork()",
            "import multiprocessing\nmultiprocessing.Process(target=print).start()",
            f"import os\nos.system('touch {marker}')",
            f"import subprocess\nsubprocess.run(['sh', '-c', 'touch {marker}'])",
            f"import os\nos.execv('/bin/sh', ['sh', '-c', 'touch {marker}'])",
        )
    )
    assert results == [Ran("not_verifiable", "needs a new process")] * 5
    assert not marker.exists()
    assert not list(harness_processes())


def test_files_outside_the_working_directory_stay_untouched(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    kept = tmp_path / "keep.txt"
    kept.write_text("behold mig")
    home_file = Path.home() / ".laerebogen-sandbox-test"
    assert not home_file.exists()
    results = sandbox.run(
        python(
            f"open({str(home_file)!r}, 'w').write('x')",
            f"open({str(tmp_path / 'new.txt')!r}, 'w').write('x')",
            f"import os\nos.remove({str(kept)!r})",
            f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
            f"import os\nos.rename({str(kept)!r}, 'stjålet.txt')",
            f"open('egen.txt', 'w').close()\nimport os\nos.rename('egen.txt', {str(kept)!r})",
            f"import os\nos.kill({os.getpid()}, 9)",  # this test's process
        )
    )
    assert [result.outcome for result in results] == ["not_verifiable"] * 7
    assert not home_file.exists()
    assert not (tmp_path / "new.txt").exists()
    assert kept.read_text() == "behold mig"


def test_the_run_directory_cannot_be_read(sandbox: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "run" / "config.toml"
    secret.write_text("hemmelig = true\n")
    results = sandbox.run(
        python(
            f"raise RuntimeError(open({str(secret)!r}).read())",
            f"import os\nraise RuntimeError(os.listdir({str(secret.parent)!r}))",
        )
    )
    assert results == [Ran("not_verifiable", "needs files")] * 2
    assert secret.read_text() == "hemmelig = true\n"


def test_no_connection_reaches_a_server_on_the_loopback(sandbox: Sandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = server.getsockname()[1]
        results = sandbox.run(
            python(
                f"import socket\nsocket.create_connection(('127.0.0.1', {port})).send(b'hej')",
                "import urllib.request\nurllib.request.urlopen('http://example.com')",
            )
        )
        with pytest.raises(TimeoutError):
            server.accept()
    assert results == [Ran("not_verifiable", "needs network")] * 2


def test_the_limits_cannot_be_raised_again(sandbox: Sandbox) -> None:
    results = patient(sandbox).run(
        python(
            "import resource\n"
            "resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY,) * 2)",
            "import ctypes\nctypes.CDLL(None).setrlimit",
            "while True:\n    pass",
        )
    )
    assert [result.outcome for result in results] == [
        "not_verifiable", "not_verifiable", "resource_limit",
    ]  # fmt: skip


def test_threads_past_the_process_limit_are_a_resource_limit() -> None:
    """Threads count against the processes of the sandbox's user (not enforced for root,
    so only where the code runs as nobody)."""
    if not supports("namespaces"):
        pytest.skip("this machine has no namespaces sandbox")
    sandbox = Sandbox(msgspec.structs.replace(LIMITS, processes=1), isolation="namespaces")
    results = sandbox.run(python("import threading\nthreading.Thread(target=print).start()"))
    assert results == [Ran("resource_limit", "processes")]


@pytest.mark.parametrize("isolation", ["namespaces", "user-namespace"])
def test_namespaces_leave_the_code_without_network_devices_or_privileges(
    isolation: str,
) -> None:
    if not supports(isolation):  # type: ignore[arg-type]
        pytest.skip(f"this machine has no {isolation} sandbox")
    sandbox = Sandbox(LIMITS, isolation=isolation)  # type: ignore[arg-type]
    privileges = (
        "import os\nassert os.getuid() == 65534, os.getuid()"
        if isolation == "namespaces"
        else "status = open('/proc/self/status').read()\n"
        "assert 'CapEff:\\t0000000000000000' in status, status"
    )
    results = sandbox.run(
        python(
            "import socket\nnames = [name for _, name in socket.if_nameindex()]\n"
            "assert names == ['lo'], names",
            privileges,
            f"import os\nassert not os.path.exists({str(Path.home() / '.cache')!r})",
        )
    )
    assert results == [Ran("ok")] * 3


def test_what_the_code_writes_to_the_result_pipe_does_not_stop_the_check(
    sandbox: Sandbox,
) -> None:
    """The code can find the harness's result pipe among its open files: garbage or a forged
    outcome there is no event, and a closed pipe only loses the code's own result."""
    every_file = (
        "import os\nfor fd in range(3, 64):\n    try:\n        os.{}\n"
        "    except OSError:\n        pass"
    )
    forged = b'{"block": 1, "outcome": "bogus"}\n[1]\nnot json\n'
    results = sandbox.run(
        python(every_file.format(f"write(fd, {forged!r})"), "x = 1", every_file.format("close(fd)"))
    )
    assert results == [Ran("ok"), Ran("ok"), Ran("not_verifiable", "no result reported")]


def test_a_sandbox_that_cannot_start_says_so_in_one_line(tmp_path: Path) -> None:
    from laerebogen.codecheck.sandbox import SandboxError

    sandbox = Sandbox(LIMITS, isolation="none")
    sandbox.command = lambda job, result: ["false"]  # type: ignore[method-assign]
    with pytest.raises(SandboxError, match=r"failed to start \(none\): exit status 1"):
        sandbox.run(python("x = 1"))
    assert os.path.exists(tmp_path)
