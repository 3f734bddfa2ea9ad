"""The program inside the sandbox: isolates itself, then runs one message's code blocks.

Started as ``python -I harness.py JOB_FD RESULT_FD`` by :mod:`laerebogen.codecheck.sandbox`
(inside ``unshare`` when the machine allows namespaces). Standard library only, because it
must not import the package it is checking code for. It reads the job (blocks, limits,
isolation, paths to hide and to keep) from ``JOB_FD`` and writes one JSON line per event to
``RESULT_FD``: ``{"ready": true}`` once isolated, then ``{"block": i, "outcome": ..., "detail":
...}`` after each block, so that the parent knows which block was running when the process
died or ran out of time.

Isolation, in this order: in a mount namespace, tmpfs over the hidden paths (home
directories, temporary directories, the run directory) with the interpreter's own
directories bound back read-only; then root becomes ``nobody`` (``namespaces``) or drops every
capability (``user-namespace``, where it was only root of its own namespace); then resource
limits (hard = soft, so they cannot be raised again) and an audit hook that refuses network,
new processes, native code and writes outside the working directory.
"""

import ast
import builtins
import ctypes
import errno
import importlib.util
import json
import os
import resource
import signal
import sqlite3
import sys

NOBODY = 65534
RESULT_LOST = 3  # the exit status when the result pipe is gone (the code closed it)
WORK_DIR = "/tmp/sandbox"  # inside the sandbox's own /tmp
# mount(2) flags
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
PR_SET_SECUREBITS, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 28, 24, 38
SECURE_BITS_LOCKED_NO_ROOT = 0x2F  # NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED and their locks
CAPABILITY_VERSION_3 = 0x20080522
LAST_CAPABILITY = 63

REFUSED_NETWORK = ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
                   "socket.getaddrinfo", "socket.gethostbyname",
                   "socket.gethostbyaddr")  # fmt: skip
REFUSED_PROCESSES = ("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn",
                     "os.spawn", "os.startfile", "subprocess.Popen", "pty.spawn")  # fmt: skip
# Native code could undo everything else; raised limits would make them pointless.
REFUSED_ALWAYS = ("ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
                  "resource.setrlimit", "resource.prlimit", "sqlite3.enable_load_extension",
                  "sqlite3.load_extension")  # fmt: skip
# Audit events whose first argument is a path the code changes, and those whose second too.
CHANGES_PATH = ("os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
                "os.utime", "shutil.rmtree")  # fmt: skip
CHANGES_PATHS = ("os.symlink", "os.link", "os.rename", "shutil.copyfile", "shutil.move")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class RefusedError(PermissionError):
    """The sandbox refused an operation; ``need`` says what the code needs that it lacks."""

    def __init__(self, need: str) -> None:
        super().__init__(f"refused by the sandbox: {need}")
        self.need = need


def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    encoded = [None if part is None else part.encode() for part in (source, target, fstype, data)]
    _check(libc().mount(*encoded[:3], ctypes.c_ulong(flags), encoded[3]), f"mount {target}")


def hide(paths: list[str], keep: list[str], tmpfs_mb: int) -> None:
    """tmpfs over each of ``paths``; the ``keep`` directories inside them bound back read-only
    (opened before they are covered, so they stay reachable)."""
    mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    covered = [path for path in paths if os.path.isdir(path)]
    kept = {}
    for path in keep:
        if os.path.isdir(path) and any(
            path == top or path.startswith(top + "/") for top in covered
        ):
            kept[path] = os.open(path, os.O_PATH)
    mounted: list[str] = []
    for path in sorted(set(covered), key=len):
        if not any(path.startswith(top + "/") for top in mounted):  # else gone already
            mount("tmpfs", path, "tmpfs", 0, f"mode=0755,size={tmpfs_mb}m")
            mounted.append(path)
    for path, fd in kept.items():
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
        mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        os.close(fd)


def become_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def drop_capabilities() -> None:
    """Root of a user namespace gives up every capability for good, so that it cannot undo
    the mounts that hide the host's files."""
    c = libc()
    _check(c.prctl(PR_SET_SECUREBITS, SECURE_BITS_LOCKED_NO_ROOT, 0, 0, 0), "securebits")
    for capability in range(LAST_CAPABILITY + 1):
        if (
            c.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0
            and ctypes.get_errno() != errno.EINVAL
        ):
            _check(-1, "drop bounding capability")
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(c.capset(header, data), "capset")
    _check(c.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def limit(limits: dict[str, int]) -> None:
    """Resource limits a process cannot raise again (hard = soft; the CPU's hard limit a
    second later, so that the soft one's SIGXCPU can be reported first)."""
    megabyte = 1 << 20
    cpu = limits["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    for name, value in (
        ("RLIMIT_AS", limits["memory_mb"] * megabyte),
        ("RLIMIT_FSIZE", limits["file_size_mb"] * megabyte),
        ("RLIMIT_NOFILE", limits["open_files"]),
        ("RLIMIT_NPROC", limits["processes"]),
        ("RLIMIT_CORE", 0),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead


def exit_instead(code: object = 0) -> None:
    """``os._exit`` for the checked code: an exit it asks for is a SystemExit, so that only
    a process the kernel killed ends without reporting its block."""
    raise SystemExit(code)


def inside(path: object, directory: str) -> bool:
    if isinstance(path, int):  # a file descriptor, e.g. from os.open with dir_fd
        return True
    try:
        real = os.path.realpath(os.fsdecode(path))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return real == directory or real.startswith(directory + "/")


def guard(work: str, hidden: list[str], keep: list[str]) -> None:
    """The audit hook: refuses what the code may not do, in every isolation mode. ``hidden``
    paths (only without a mount namespace) look absent, except the working directory and
    the interpreter's own directories inside them."""

    def changes_inside(event: str, args: tuple) -> bool:
        paths = args[:2] if event in CHANGES_PATHS else args[:1]
        return all(inside(path, work) for path in paths)

    def concealed(path: object) -> bool:
        return any(inside(path, top) for top in hidden) and not any(
            inside(path, seen) for seen in (work, *keep)
        )

    def hook(event: str, args: tuple) -> None:
        if event in REFUSED_NETWORK:
            raise RefusedError("network")
        if event in REFUSED_PROCESSES:
            raise RefusedError("a new process")
        if event in REFUSED_ALWAYS:
            raise RefusedError(event)
        if event == "open" and args and args[0] is not None:
            path, mode, flags = args[0], args[1], args[2]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
                flags & WRITE_FLAGS
            )
            if writes and not inside(path, work):
                raise RefusedError("files outside its directory")
            if concealed(path):
                raise FileNotFoundError(errno.ENOENT, "hidden by the sandbox", os.fsdecode(path))
        elif event in CHANGES_PATH + CHANGES_PATHS and not changes_inside(event, args):
            raise RefusedError("files outside its directory")
        elif event in ("os.kill", "os.killpg") and args and args[0] not in (0, os.getpid()):
            raise RefusedError("signals to other processes")
        elif event in ("os.listdir", "os.scandir") and args and concealed(args[0]):
            raise FileNotFoundError(errno.ENOENT, "hidden by the sandbox")

    sys.addaudithook(hook)


def refused_need(error: BaseException) -> str | None:
    """What the sandbox refused, if ``error`` or what led to it was a refusal."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, RefusedError):
            return error.need
        reason = getattr(error, "reason", None)
        if isinstance(reason, RefusedError):
            return reason.need
        error = error.__cause__ or error.__context__
    return None


def classify(error: BaseException) -> tuple[str, str]:
    """The outcome and detail of a Python block that raised ``error``."""
    need = refused_need(error)
    if need is not None:
        return "not_verifiable", f"needs {need}"
    if isinstance(error, SystemExit):
        if error.code in (None, 0):
            return "ok", ""
        return "exception", "SystemExit"
    if isinstance(error, EOFError):
        return "not_verifiable", "needs input"
    if isinstance(error, ModuleNotFoundError):
        return "not_verifiable", f"needs module {error.name}"
    if isinstance(error, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return "not_verifiable", "needs files"
    if isinstance(error, MemoryError):
        return "resource_limit", "memory"
    if isinstance(error, OSError) and error.errno in (errno.EAGAIN, errno.EMFILE, errno.EFBIG):
        return "resource_limit", os.strerror(error.errno)
    if isinstance(error, RuntimeError) and "can't start new thread" in str(error):
        return "resource_limit", "processes"  # threads count against RLIMIT_NPROC
    if isinstance(error, OSError) and error.errno in (errno.ENETUNREACH, errno.ECONNREFUSED):
        return "not_verifiable", "needs network"
    return "exception", type(error).__name__


def missing_modules(tree: ast.Module) -> list[str]:
    """Modules the block imports at its top level that are not installed: recognised before
    the block runs."""
    missing = []
    for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for name in names:
            try:
                found = importlib.util.find_spec(name.split(".")[0]) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(name)
    return missing


def run_python(code: str, namespace: dict) -> tuple[str, str]:
    try:
        tree = compile(code, "<block>", "exec", ast.PyCF_ONLY_AST)
        program = compile(tree, "<block>", "exec")
    except (SyntaxError, ValueError) as error:
        return "syntax_error", f"{type(error).__name__}: line {getattr(error, 'lineno', '?')}"
    missing = missing_modules(tree)
    if missing:
        return "not_verifiable", f"needs module {missing[0]}"
    try:
        exec(program, namespace)
    except BaseException as error:
        return classify(error)
    return "ok", ""


def run_sql(code: str, database: sqlite3.Connection) -> tuple[str, str]:
    try:
        database.executescript(code)
    except sqlite3.Error as error:
        text = str(error)
        if "syntax error" in text or "incomplete input" in text:
            return "syntax_error", text[:200]
        if text.startswith(("no such table", "no such column")):
            return "not_verifiable", f"needs its own tables ({text[:160]})"
        return "exception", f"{type(error).__name__}: {text[:160]}"
    except MemoryError:
        return "resource_limit", "memory"
    return "ok", ""


def main() -> None:
    job_fd, result_fd = int(sys.argv[1]), int(sys.argv[2])
    with os.fdopen(job_fd, "rb") as source:
        job = json.loads(source.read())
    results = os.fdopen(result_fd, "w", buffering=1)
    isolation = job["isolation"]
    hidden = [os.path.realpath(path) for path in job["hide"]]
    keep = [os.path.realpath(path) for path in job["keep"]]
    if isolation == "none":
        work = os.path.realpath(job["work"])
    else:
        hide(hidden, keep, job["tmpfs_mb"])
        work = WORK_DIR
        os.makedirs(work)
        if isolation == "namespaces":
            os.chown(work, NOBODY, NOBODY)
            become_nobody()
        else:
            drop_capabilities()
        hidden = []  # hidden by the mounts already
    os.chdir(work)
    os.environ.update(HOME=work, TMPDIR=work)
    limit(job["limits"])
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    database = sqlite3.connect(":memory:")
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    sys.argv = [""]  # as for python -c: the code sees no arguments of the harness
    guard(work, hidden, keep)
    running = [0]

    def report(outcome: str, detail: str, last: bool = False) -> None:
        event = {"block": running[0], "outcome": outcome, "detail": detail, "last": last}
        try:
            results.write(json.dumps(event) + "\n")
        except (OSError, ValueError):  # the code closed the pipe: say so by the exit status
            leave(RESULT_LOST)

    def out_of_cpu(_signum: int, _frame: object) -> None:
        report("resource_limit", "CPU time", last=True)
        leave(0)

    leave, os._exit = os._exit, exit_instead
    signal.signal(signal.SIGXCPU, out_of_cpu)
    results.write(json.dumps({"ready": True}) + "\n")
    for index, block in enumerate(job["blocks"]):
        running[0] = index
        if block["language"] == "sql":
            report(*run_sql(block["code"], database))
        else:
            report(*run_python(block["code"], namespace))


if __name__ == "__main__":
    main()
