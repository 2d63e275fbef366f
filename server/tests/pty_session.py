"""Drives a program in a pseudo-terminal, as a person at a terminal would.

usage: pty_session.py STEPS.json -- PROGRAM ARGS...

STEPS is a JSON list of {"send": text} (typed as is: "\r" is Enter, "\t"
Tab, "\u0003" Ctrl-C, "\u0004" Ctrl-D) and {"expect": regex, "timeout": s}
(waits until the screen output since the previous expect matches). Prints
the whole transcript; exits 1 naming the first expectation not met.
Standard library only.
"""

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def main():
    steps_path = sys.argv[1]
    program = sys.argv[sys.argv.index("--") + 1 :]
    with open(steps_path) as f:
        steps = json.load(f)
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm"
        os.execvp(program[0], program)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    transcript = b""
    seen = 0

    def read(deadline):
        nonlocal transcript
        ready, _, _ = select.select([fd], [], [], max(0.0, min(0.2, deadline - time.time())))
        if not ready:
            return True
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return False
        if not chunk:
            return False
        # Answer cursor-position queries as a terminal would.
        if b"\x1b[6n" in chunk:
            os.write(fd, b"\x1b[1;1R")
        transcript += chunk
        return True

    failed = None
    for step in steps:
        if "send" in step:
            for char in step["send"]:
                os.write(fd, char.encode())
                time.sleep(0.01)
            continue
        pattern = re.compile(step["expect"].encode())
        deadline = time.time() + step.get("timeout", 20)
        alive = True
        while True:
            screen = ANSI.sub(b"", transcript[seen:])
            match = pattern.search(screen)
            if match:
                # Later expectations look after this one's match.
                seen = len(transcript)
                break
            if time.time() > deadline or not alive:
                failed = step["expect"]
                break
            alive = read(deadline)
        if failed:
            break
    # Let the program finish what it writes, then reap it.
    end = time.time() + 5
    while time.time() < end:
        if not read(end):
            break
        if os.waitpid(pid, os.WNOHANG)[0] != 0:
            pid = 0
            break
    if pid:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    sys.stdout.write(transcript.decode("utf-8", "replace"))
    if failed:
        sys.stdout.write(f"\n### expectation not met: {failed!r}\n")
        sys.exit(1)


main()
