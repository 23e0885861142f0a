"""One function process as Lambda runs it: a clean environment with the Lambda variables, the
function's own configuration and the emulator's endpoint; plus what /proc says about its CPU
time and peak memory."""

import glob
import os
import signal
import subprocess
import time

from emulator import CREDENTIALS, REGION

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MEMORY_MB = 128


def lambda_environment(function, runtime_api, endpoint, config, python):
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": f"taskfleet-{function}",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/taskfleet-{function}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]bench",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        # Loopback only: never let an SDK fall back to the EC2/IMDS metadata endpoint.
        "AWS_EC2_METADATA_DISABLED": "true",
        **CREDENTIALS,
        **config,
    }
    if python:
        env["AWS_EXECUTION_ENV"] = "AWS_Lambda_python3.11"
        # The handler modules are compiled at each cold start (as from a zip without .pyc);
        # boto3 and botocore use the .pyc files pip wrote at install time.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class Sandbox:
    """A running function process."""

    def __init__(self, command, env, log_path):
        self.log = open(log_path, "ab")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def cpu_ticks_seconds(self):
        """(utime, stime) of the whole process (all threads, live and exited), from
        /proc/<pid>/stat: what getrusage reports, in clock ticks, as seconds."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS

    def cpu_ns(self):
        """Nanoseconds on CPU of the live threads (/proc/<pid>/task/*/schedstat): finer than
        clock ticks, for short warm runs."""
        total = 0
        for path in glob.glob(f"/proc/{self.pid}/task/*/schedstat"):
            try:
                with open(path) as schedstat:
                    total += int(schedstat.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return total

    def threads(self):
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def memory_kb(self):
        """(VmHWM, VmRSS) in kB: the peak and current resident set."""
        values = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in ("VmHWM", "VmRSS"):
                    values[name] = int(rest.split()[0])
        return values.get("VmHWM", 0), values.get("VmRSS", 0)

    def stop(self):
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()
