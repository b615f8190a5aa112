"""What the Python benchmarks share: free loopback ports, bounded polling, code packages, and a client of fnlb's
TencentCloud API (TC3-HMAC-SHA256 signed, with the credentials fnlb wrote into its data directory)."""

import base64
import datetime
import hashlib
import hmac
import http.client
import io
import json
import os
import socket
import time
import zipfile

VERSIONS = {"scf": "2018-04-16", "clb": "2018-03-17"}


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def deadline_poll(what, check, seconds=30.0, pause=0.05):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(pause)
    raise TimeoutError(f"{what}: not within {seconds} s")


def attempt(call):
    """The call's answer, or None when it failed."""
    try:
        return call()
    except (RuntimeError, OSError):
        return None


def zip_source(source, name="index.py"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, source)
    return base64.b64encode(buf.getvalue()).decode()


class Api:
    """The API of the fnlb whose data directory is `data` and whose API listens on 127.0.0.1:`port`; waits (30 s at
    most) for it to answer and for its credentials."""

    def __init__(self, name, data, port):
        self.name, self.api_port = name, port
        creds = os.path.join(data, "credentials.json")
        deadline_poll(f"{name} starts", lambda: os.path.exists(creds) and self.ping())
        with open(creds) as f:
            c = json.load(f)
        self.sid, self.skey = c["secretId"], c["secretKey"]
        self.conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=30)

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.api_port), timeout=1):
                return True
        except OSError:
            return False

    def call(self, service, action, params):
        """One TC3-signed API call; the answer's Response (RuntimeError when it is an error)."""
        body = json.dumps(params)
        ts = int(time.time())
        date = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d")
        host = f"127.0.0.1:{self.api_port}"
        sha = lambda s: hashlib.sha256(s.encode()).hexdigest()
        canonical = f"POST\n/\n\ncontent-type:application/json\nhost:{host}\n\ncontent-type;host\n{sha(body)}"
        scope = f"{date}/{service}/tc3_request"
        to_sign = f"TC3-HMAC-SHA256\n{ts}\n{scope}\n{sha(canonical)}"
        key = ("TC3" + self.skey).encode()
        for part in (date, service, "tc3_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers = {
            "Authorization": f"TC3-HMAC-SHA256 Credential={self.sid}/{scope}, SignedHeaders=content-type;host, "
                             f"Signature={signature}",
            "Content-Type": "application/json", "Host": host, "X-TC-Action": action, "X-TC-Timestamp": str(ts),
            "X-TC-Version": VERSIONS[service], "X-TC-Region": "ap-guangzhou",
        }
        try:
            self.conn.request("POST", "/", body, headers)
            answer = json.loads(self.conn.getresponse().read())["Response"]
        except (OSError, http.client.HTTPException, ValueError) as e:
            self.conn.close()
            raise RuntimeError(f"{action} on {self.name}: {e}") from e
        if "Error" in answer:
            raise RuntimeError(f"{action} on {self.name}: {answer['Error']}")
        return answer
