"""The sandbox a submission runs in, and the sandboxed Jupyter kernel the grader drives.

* :func:`sandbox_command` wraps a command in bubblewrap (a whitelist of read-only system and
  Python directories, one writable folder, private /tmp, /proc and home, no network, its own PID
  namespace so every child dies with it) or a container (``docker``/``podman``), or nothing.
* :class:`SandboxKernel` starts an IPython kernel *inside* that sandbox and drives it from the
  grader's (trusted) process over Unix sockets in the writable folder (ZeroMQ ``ipc`` transport:
  the sandbox has no network). The grader executes the notebook cell by cell through it (nbclient),
  then asks it to call the student's functions (:mod:`xaicourse.checking`). A watchdog kills the
  kernel past its memory limit; a cell past its time is a timeout, a kernel that dies is noticed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SANDBOXES = ("auto", "bwrap", "docker", "podman", "none")
DOCKER_IMAGE = "xaicourse-grader"

def bwrap_available() -> tuple[bool, str]:
    exe = shutil.which("bwrap")
    if not exe:
        return False, "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    try:
        r = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                           capture_output=True, text=True, timeout=20)
    except Exception as err:  # pragma: no cover
        return False, f"bwrap failed to start: {err}"
    if r.returncode != 0:
        return False, f"bwrap cannot create namespaces here: {r.stderr.strip()[:200]}"
    return True, ""


def resolve_sandbox(sandbox: str) -> str:
    if sandbox not in SANDBOXES:
        raise ValueError(f"sandbox must be one of {SANDBOXES}, got {sandbox!r}")
    if sandbox == "auto":
        ok, why = bwrap_available()
        return "bwrap" if ok else "none"
    if sandbox == "bwrap":
        ok, why = bwrap_available()
        if not ok:
            raise ValueError(f"sandbox 'bwrap' is not usable: {why} (or choose --sandbox docker/none)")
    if sandbox in ("docker", "podman") and not shutil.which(sandbox):
        raise ValueError(f"sandbox {sandbox!r}: the {sandbox} command is not installed")
    return sandbox


def sandbox_command(kind: str, argv: list[str], course: Path, cache: Path | None = None,
                    env: dict | None = None) -> list[str]:
    """``argv`` wrapped in the chosen sandbox; ``course`` is the only writable folder."""
    course = course.resolve()
    if kind == "none":
        return argv
    if kind == "bwrap":
        return _bwrap(argv, course, cache)
    # docker / podman: the image must hold this Python environment (see the README)
    envs = [a for k, v in (env or {}).items() if k != "JPY_PARENT_PID" for a in ("-e", f"{k}={v}")]
    return [kind, "run", "--rm", "--network", "none", "--pids-limit", "512", "--memory", "6g",
            "-v", f"{course}:{course}", "-w", str(course), *envs, DOCKER_IMAGE] + argv


def _bwrap(argv: list[str], course: Path, cache: Path | None) -> list[str]:
    """A sandbox built from a whitelist: the system's read-only directories, this Python (its base
    installation, the virtual environment, the xaicourse package), the model cache (read-only), the
    cache key, and the one writable course folder. Nothing else of the machine exists inside — not
    the course repository, not the submissions, not the grades — and the sandbox's own command
    line, visible in its /proc, names only those whitelisted paths."""
    import xaicourse

    # JPY_PARENT_PID: ipykernel polls its parent by pid, which means nothing across the PID namespace
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--unsetenv", "JPY_PARENT_PID", "--dev", "/dev", "--proc", "/proc",
           "--tmpfs", "/tmp", "--tmpfs", "/run"]
    for d in ("/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    pkg = Path(xaicourse.__file__).resolve().parent
    home = Path.home()
    cmd += ["--tmpfs", str(home)]
    keep = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), pkg,
            Path(os.path.realpath(sys.executable)).parent.parent,
            Path(os.path.abspath(sys.executable)).parent.parent}  # a symlinked venv, as it is called
    key = home / ".config" / "xaicourse"
    if key.exists():
        keep.add(key.resolve())
    if cache is not None and cache.exists():
        keep.add(cache.resolve())
    for p in sorted(keep, key=lambda q: len(q.parts)):
        if not any(_inside(p, q) and p != q for q in keep):  # parents first, no double mounts
            cmd += ["--ro-bind", str(p), str(p)]
    cmd += ["--bind", str(course), str(course), "--chdir", str(course), "--setenv", "HOME", str(home),
            "--setenv", "MPLCONFIGDIR", str(course / ".matplotlib"), "--"]
    return cmd + argv


def _inside(p: Path, parent: Path) -> bool:
    try:
        p.relative_to(parent)
        return True
    except ValueError:
        return False


def _tree_rss(proc) -> int:
    import psutil
    try:
        ps = psutil.Process(proc.pid)
        return sum(c.memory_info().rss for c in [ps, *ps.children(recursive=True)])
    except psutil.Error:
        return 0


def _dir_size(p: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(p):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


_RUNNING: set = set()


def _kill_running() -> None:
    """Kill every sandboxed run still going (on Ctrl-C / SIGTERM)."""
    import signal

    for proc in list(_RUNNING):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass


def run_limited(cmd, cwd, env, wall: float, memory_mb: int, disk_mb: int, output_kb: int = 512):
    """Run ``cmd`` in its own session; kill the whole process group past a limit.

    Returns (returncode, output text (cut to ``output_kb``), reason it was killed or "").
    """
    import signal

    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        _RUNNING.add(proc)
        reason = ""
        t0 = time.time()
        while proc.poll() is None:
            time.sleep(0.25)
            if time.time() - t0 > wall:
                reason = f"wall time over {wall:.0f}s"
            elif _tree_rss(proc) > memory_mb * 2 ** 20:
                reason = f"memory over {memory_mb} MB"
            elif int(time.time() - t0) % 5 == 0 and _dir_size(Path(cwd)) > disk_mb * 2 ** 20:
                reason = f"disk use over {disk_mb} MB"
            if reason:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
                break
        _RUNNING.discard(proc)
        log.seek(0)
        raw = log.read()
    text = raw.decode("utf-8", "replace")
    if len(text) > output_kb * 1024:
        text = text[: output_kb * 512] + "\n…[output cut]…\n" + text[-output_kb * 512:]
    return proc.returncode, text, reason




# ----------------------------------------------------------------------------- the sandboxed kernel
class KernelProblem(Exception):
    """A cell or call that did not come back: ``reason`` is "timeout", "kernel died" or "killed (…)"."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def _kernel_manager_class():
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Dict, Unicode

    class SandboxKernelManager(AsyncKernelManager):
        """An IPython kernel started inside the sandbox (its command wrapped by :func:`sandbox_command`)."""
        sandbox_kind = Unicode("none")
        sandbox_folder = Unicode("")
        sandbox_cache = Unicode("")
        sandbox_env = Dict()

        def format_kernel_cmd(self, extra_arguments=None):
            argv = [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]
            return sandbox_command(self.sandbox_kind, argv, Path(self.sandbox_folder),
                                   cache=Path(self.sandbox_cache) if self.sandbox_cache else None,
                                   env=self.sandbox_env)

    return SandboxKernelManager


class SandboxKernel:
    """A kernel in the sandbox, driven from here: ``execute(cell)`` then ``run(code)`` for calls.

    ``folder`` is the only writable place inside (the kernel's working directory, its sockets,
    the call files). ``env`` is the kernel's whole environment. ``memory_mb`` bounds the RSS of
    the kernel's process tree (a watchdog kills it past that, and the next call reports it).
    """

    def __init__(self, folder: Path, kind: str, env: dict, timeout: float, memory_mb: int = 6144,
                 cache: Path | None = None, startup_timeout: float = 120, disk_mb: int = 512):
        self.folder, self.kind, self.env, self.timeout = Path(folder), kind, env, timeout
        self.disk_mb = disk_mb
        self.memory_mb, self.cache, self.startup_timeout = memory_mb, cache, startup_timeout
        self.client = None
        self.killed = ""
        self._stop = threading.Event()

    # -- life cycle
    def start(self, nb) -> "SandboxKernel":
        from nbclient import NotebookClient
        from nbclient.util import run_sync

        self.folder.mkdir(parents=True, exist_ok=True)
        km = _kernel_manager_class()(transport="ipc", ip=str(self.folder / "k"),
                                     connection_file=str(self.folder / "kernel.json"))
        km.sandbox_kind, km.sandbox_folder = self.kind, str(self.folder)
        km.sandbox_cache = str(self.cache) if self.cache else ""
        km.sandbox_env = dict(self.env)
        self.km = km
        self.client = NotebookClient(nb, km=km, timeout=self.timeout, allow_errors=True,
                                     startup_timeout=self.startup_timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(self.folder)}})
        # the kernel's own stdout/stderr (banners, crashes) go to a log outside its folder
        self._log = open(self.folder.parent / f"kernel-{id(self)}.log", "ab")
        run_sync(self.client.async_start_new_kernel)(env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        run_sync(self.client.async_start_new_kernel_client)()
        self._watch = threading.Thread(target=self._watchdog, daemon=True)
        self._watch.start()
        return self

    def _pid(self):
        try:
            return self.km.provisioner.process.pid
        except AttributeError:
            return None

    def _watchdog(self):
        import signal

        class _P:
            pid = None
        ticks = 0
        while not self._stop.wait(0.5):
            pid = self._pid()
            if pid is None:
                continue
            _P.pid = pid
            ticks += 1
            if _tree_rss(_P) > self.memory_mb * 2 ** 20:
                self.killed = f"memory over {self.memory_mb} MB"
            elif ticks % 6 == 0 and _dir_size(self.folder) > self.disk_mb * 2 ** 20:
                self.killed = f"disk use over {self.disk_mb} MB"
            if self.killed:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                return

    def close(self) -> None:
        import signal

        self._stop.set()
        pid = self._pid()
        if self.client is not None:
            try:
                self.client.kc.stop_channels()
            except Exception:
                pass
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            from nbclient.util import run_sync
            run_sync(self.km.shutdown_kernel)(now=True)
        except Exception:
            pass
        try:
            from nbclient.util import run_sync
            run_sync(self.km.cleanup_resources)()
        except Exception:
            pass
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- running code
    def execute(self, cell, index: int, timeout: float | None = None):
        """Run one notebook cell (outputs land in ``cell``); raise KernelProblem if it does not finish."""
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        if timeout is not None:
            self.client.timeout = timeout
        try:
            self.client.execute_cell(cell, index)
        except CellTimeoutError:
            raise KernelProblem(f"killed ({self.killed})" if self.killed else "timeout") from None
        except (DeadKernelError, RuntimeError) as err:
            if isinstance(err, RuntimeError) and "Kernel" not in str(err) and "kernel" not in str(err):
                raise
            raise KernelProblem(f"killed ({self.killed})" if self.killed else "kernel died") from None
        finally:
            self.client.timeout = self.timeout
        if self.killed:
            raise KernelProblem(f"killed ({self.killed})")
        return cell

    def run(self, code: str, timeout: float) -> None:
        """Run grader code (a call of the student's function) in the kernel; its outputs are dropped."""
        import nbformat

        cell = nbformat.v4.new_code_cell(code)
        cells = self.client.nb.cells
        cells.append(cell)           # nbclient files a cell's outputs by its index in the notebook
        try:
            self.execute(cell, len(cells) - 1, timeout=timeout)
        finally:
            cells.pop()
        errs = [o for o in cell.outputs if o.get("output_type") == "error"]
        if errs:  # the call helper itself failed (e.g. the answer broke the kernel's imports)
            from .checking import Failed
            raise Failed(f"the grader could not call into the notebook ({errs[-1].get('ename')}: "
                         f"{str(errs[-1].get('evalue', ''))[:200]})")
