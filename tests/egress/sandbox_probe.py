"""Run inside a test container: try kernel features a sandbox escape would start from.

Prints one JSON line: for each system call, "ok" or the errno name it failed
with; for each file, whether it can be read.  Stdlib only (ctypes for the
raw system calls, x86-64 numbers).
"""

import ctypes
import errno
import json
import os
import platform
import socket

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

SYSCALLS = {
    # name: (number, args)
    "keyctl": (250, (0, -1, 0)),  # KEYCTL_GET_KEYRING_ID of the thread keyring
    "add_key": (248, (0, 0, 0, 0, 0)),
    "bpf": (321, (0, 0, 0)),  # BPF_MAP_CREATE with no attributes
    "perf_event_open": (298, (0, 0, -1, -1, 0)),
    "io_uring_setup": (425, (1, 0)),
    "userfaultfd": (323, (0,)),
    "init_module": (175, (0, 0, 0)),
    "kexec_load": (246, (0, 0, 0, 0)),
    "open_by_handle_at": (304, (-100, 0, 0)),
    "syslog_read": (103, (3, 0, 0)),  # dmesg
    "ptrace_traceme": (101, (0, 0, 0, 0)),
}


def syscall(number, args):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    if result == -1:
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    return "ok"


def libc_call(fn, *args):
    ctypes.set_errno(0)
    if fn(*args) == -1:
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    return "ok"


def readable(path):
    try:
        with open(path, "rb") as f:
            f.read(16)
        return "readable"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def raw_socket(family, kind, proto):
    try:
        socket.socket(family, kind, proto).close()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def isolated(fn, *args):
    """``fn(*args)`` in a forked child, so that one probe (say, unshare) cannot change the next."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            outcome = fn(*args)
        except Exception as exc:
            outcome = "raised " + type(exc).__name__
        os.write(write_end, outcome.encode())
        os._exit(0)
    os.close(write_end)
    outcome = os.read(read_end, 200).decode() or "child died"
    os.close(read_end)
    os.waitpid(pid, 0)
    return outcome


def main():
    results = {name: isolated(syscall, *spec) for name, spec in SYSCALLS.items()}
    results["unshare_user"] = isolated(libc_call, libc.unshare, 0x10000000)
    results["unshare_mount"] = isolated(libc_call, libc.unshare, 0x00020000)
    results["mount_tmpfs"] = isolated(libc_call, libc.mount, b"none", b"/tmp", b"tmpfs", 0, None)
    results["raw_socket_inet"] = isolated(
        raw_socket, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP
    )
    results["packet_socket"] = isolated(raw_socket, socket.AF_PACKET, socket.SOCK_RAW, 0)
    for path in ("/proc/kcore", "/proc/kallsyms", "/dev/mem", "/sys/kernel/debug"):
        results[path] = isolated(readable, path) if os.path.exists(path) else "absent"
    results["kernel"] = platform.release()
    results["uid"] = os.getuid()
    with open("/proc/self/status") as f:
        results["CapEff"] = next(x.split()[1] for x in f if x.startswith("CapEff"))
    print("PROBE " + json.dumps(results), flush=True)


main()
