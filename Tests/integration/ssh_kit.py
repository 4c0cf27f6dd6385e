"""A throwaway OpenSSH server and two SSH clients, shared by the sshd tests (e2e.py, test_sshd.py)
and the demo (scripts/demo_login.py). Part of the test kit listed in helpers.py; no pytest needed.

  pam_lines(module_options)   password (pam_unix), then pam_twofactor (helpers.PAM_MODULE)
  ThrowawaySshd               the system's /usr/sbin/sshd under another name, on 127.0.0.1
  paramiko_login()            keyboard-interactive with paramiko
  OpenSshClient               OpenSSH's ssh through a forced SSH_ASKPASS, no terminal
Both clients answer each prompt by its text (answer_for) and return a LoginResult.
"""
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import warnings

import helpers
from helpers import CODE_PROMPT

SSHD = "/usr/sbin/sshd"


# --- the PAM stack of a login ------------------------------------------------------------------

def pam_lines(module_options=(), auth_first=("auth required pam_unix.so nodelay",)):
    """The throwaway PAM service: the password, then the second factor."""
    options = " ".join(module_options)
    return [
        *auth_first,
        f"auth required {helpers.PAM_MODULE} {options}".rstrip(),
        "account required pam_unix.so",
        "session required pam_unix.so",
    ]


# --- a throwaway sshd --------------------------------------------------------------------------

class ThrowawaySshd:
    """The system's sshd binary under another name (sshd-<unique>, which names its PAM service
    /etc/pam.d/sshd-<unique>, holding `pam_stack`), on 127.0.0.1:<free port>, with its own host
    key and config; only `allow_users` (an sshd pattern) may log in. start() returns it;
    destroy() (or leaving a `with` block) stops it and removes everything it made."""

    def __init__(self, pam_stack, allow_users, prefix="tfs", comment="the twofactor integration tests",
                 host="127.0.0.1", port=None, wrapper=()):
        # host, port and wrapper (a command prefix): an sshd inside a network namespace (netns_kit).
        self.host, self.fixed_port, self.wrapper = host, port, tuple(wrapper)
        self.service = f"sshd-{helpers.unique_name(prefix)}"
        self.dir = tempfile.mkdtemp(prefix=f"{self.service}-", dir="/tmp")
        self.program = os.path.join(self.dir, self.service)  # argv[0] names the PAM service
        self.config = os.path.join(self.dir, "sshd_config")
        self.host_key = os.path.join(self.dir, "ssh_host_ed25519_key")
        self.log_path = os.path.join(self.dir, "sshd.log")
        self.pam_stack = list(pam_stack)
        self.allow_users = allow_users
        self.comment = comment
        self.port = None
        self.process = None
        self.pam = None
        self.created_run_sshd = False

    def start(self, timeout=15):
        try:
            self._start(timeout)
        except BaseException:
            self.destroy()
            raise
        return self

    def _start(self, timeout):
        if not os.path.isdir("/run/sshd"):  # sshd's privilege separation directory
            os.makedirs("/run/sshd", mode=0o755)
            self.created_run_sshd = True
        self.pam = helpers.PamService(self.service, self.pam_stack, self.comment)
        os.symlink(SSHD, self.program)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.service,
                        "-f", self.host_key], check=True, capture_output=True)
        for attempt in range(3):
            self.port = self.fixed_port or helpers.free_port()
            self._write_config()
            checked = subprocess.run([self.program, "-t", "-f", self.config],
                                     capture_output=True, text=True)
            assert checked.returncode == 0, f"sshd -t refused {self.config}:\n{checked.stderr}"
            log = open(self.log_path, "w")
            with log:
                self.process = subprocess.Popen(
                    [*self.wrapper, self.program, "-D", "-f", self.config, "-E", self.log_path],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            helpers.register_cleanup(("sshd", self.service), self.stop)
            if self._wait_listening(timeout):
                return
            self.stop()  # most likely someone took the port between free_port() and bind
        raise RuntimeError(f"sshd never listened:\n{self.log()}")

    def _write_config(self):
        with open(self.config, "w") as f:
            f.write(f"""# throwaway sshd of {self.comment}
ListenAddress {self.host}:{self.port}
HostKey {self.host_key}
PidFile {self.dir}/sshd.pid
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
PubkeyAuthentication no
HostbasedAuthentication no
AuthenticationMethods keyboard-interactive
AuthorizedKeysFile none
PermitRootLogin no
AllowUsers {self.allow_users}
PermitEmptyPasswords no
MaxAuthTries 3
LoginGraceTime 30
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
LogLevel VERBOSE
""")

    def _wait_listening(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "Server listening on" in self.log():
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def log(self):
        return helpers.read_text(self.log_path)

    def stop(self):
        """Stops the sshd we started, by its pid (sessions already open end on their own)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        helpers.done_cleanup(("sshd", self.service))

    def destroy(self):
        try:
            self.stop()
        finally:
            if self.pam is not None:
                self.pam.remove()
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.created_run_sshd:
                try:
                    os.rmdir("/run/sshd")
                except OSError:
                    pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()


# --- ssh clients -------------------------------------------------------------------------------

class LoginResult:
    def __init__(self, client, authenticated, prompts, messages, output="", exit_status=None):
        self.client = client
        self.authenticated = authenticated
        self.prompts = prompts          # the prompt texts the server asked, in order
        self.messages = messages        # text the server showed besides prompts (PAM messages)
        self.output = output            # the command's standard output
        self.exit_status = exit_status

    def asked_for_code(self):
        return any(CODE_PROMPT.strip() in p for p in self.prompts)

    def asked_for_password(self):
        return any("password" in p.lower() for p in self.prompts)

    def __repr__(self):
        return (f"LoginResult({self.client}, authenticated={self.authenticated}, "
                f"prompts={self.prompts!r}, messages={self.messages!r}, "
                f"output={self.output!r}, exit_status={self.exit_status})")


def answer_for(prompt, password, code):
    """Answers a prompt by its text; anything unexpected gets an empty answer (and fails)."""
    if CODE_PROMPT.strip() in prompt:
        return code if code is not None else ""
    if "password" in prompt.lower():
        return password
    return ""


def paramiko_login(port, user, password, code=None, command="id -un", timeout=20, source=None,
                   answer=None, sock=None):
    """keyboard-interactive with paramiko, then runs `command` if authenticated. `source`: the
    local address to connect from (127.0.0.2 ... are loopback too); `answer(prompt)` overrides
    answer_for (return None to fall back to it); `sock`: a connected socket to use instead of
    127.0.0.1:port (one made in a namespace, netns_kit)."""
    with warnings.catch_warnings():  # Debian's paramiko pulls in invoke, which imports `imp`
        warnings.simplefilter("ignore", DeprecationWarning)
        import paramiko  # apt's python3-paramiko, importable under /usr/bin/python3

    prompts, messages = [], []

    def handler(title, instructions, prompt_list):
        for text in (title, instructions):
            if text:
                messages.append(text)
        answers = []
        for text, _echo in prompt_list:
            prompts.append(text)
            given = answer(text) if answer else None
            answers.append(given if given is not None else answer_for(text, password, code))
        return answers

    if sock is not None:
        transport = paramiko.Transport(sock)
    elif source is None:
        transport = paramiko.Transport(("127.0.0.1", port))
    else:
        import socket
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        try:
            transport.auth_interactive(user, handler)
        except paramiko.AuthenticationException:
            return LoginResult("paramiko", False, prompts, messages)
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(timeout)
        channel.exec_command(command)
        output = channel.makefile("rb").read().decode(errors="replace")
        status = channel.recv_exit_status()
        return LoginResult("paramiko", True, prompts, messages, output, status)
    finally:
        transport.close()


ASKPASS_SCRIPT = """#!/bin/sh
# SSH_ASKPASS for the end-to-end tests: records the prompt, answers the password or the code.
printf '%s\\n' "$1" >> "$E2E_PROMPT_LOG"
case "$1" in
  *"Two-factor authentication code"*) printf '%s\\n' "$E2E_CODE" ;;
  *[Pp]assword*) printf '%s\\n' "$E2E_PASSWORD" ;;
  *) exit 1 ;;
esac
"""


class OpenSshClient:
    """OpenSSH's ssh, answering through SSH_ASKPASS (forced) with no terminal at all."""

    def __init__(self, prefix="tf"):
        self.dir = tempfile.mkdtemp(prefix=f"{prefix}-ssh-", dir="/tmp")  # 0700, root's
        self.askpass = os.path.join(self.dir, "askpass")
        with open(self.askpass, "w") as f:
            f.write(ASKPASS_SCRIPT)
        os.chmod(self.askpass, 0o700)

    def login(self, port, user, password, code=None, command="id -un", timeout=30, log_level="INFO",
              source=None):
        prompt_log = os.path.join(self.dir, f"prompts-{secrets.token_hex(4)}")
        open(prompt_log, "w").close()
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": self.dir,
            "SSH_ASKPASS": self.askpass,
            "SSH_ASKPASS_REQUIRE": "force",
            "E2E_PROMPT_LOG": prompt_log,
            "E2E_PASSWORD": password,
            "E2E_CODE": code if code is not None else "",
        }
        argv = ["ssh", "-F", "/dev/null", "-T", "-p", str(port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "PreferredAuthentications=keyboard-interactive",
                "-o", "PubkeyAuthentication=no", "-o", "BatchMode=no",
                # One keyboard-interactive round: a failed code is one failure, not three.
                "-o", "NumberOfPasswordPrompts=1",
                "-o", "ConnectTimeout=10", "-o", f"LogLevel={log_level}",
                *(["-b", source] if source else []),
                f"{user}@127.0.0.1", command]
        try:
            done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout, start_new_session=True)
            with open(prompt_log) as f:
                prompts = [line.rstrip("\n") for line in f]
        finally:
            helpers.unlink_quietly(prompt_log)
        authenticated = "Permission denied" not in done.stderr and done.returncode != 255
        return LoginResult("openssh", authenticated, prompts, [done.stderr], done.stdout,
                           done.returncode)

    def destroy(self):
        shutil.rmtree(self.dir, ignore_errors=True)
