"""fnlb Python runtime bootstrap: runs one SCF function instance.

fnlb starts ``python3 -I -B bootstrap.py`` with the working directory set to the
function's code directory and these environment variables (among the SCF ones):

    FNLB_RUNTIME_SOCKET  Unix stream socket to connect to (once); '@name' is in the abstract namespace
    _HANDLER             "file.function", e.g. "index.main_handler"
    USER_CODE_ROOT       the code directory (defaults to the working directory)

Every frame, in both directions, is

    length:u32 big-endian (counts kind + payload) | kind:u8 | payload

with length <= 16 MiB + 1 (see docs/function-protocol.md).

    fnlb -> instance   1  INVOKE      JSON {"context": {...}, "event": ...}
    instance -> fnlb  10  READY       empty; the handler was imported and found
                      11  INIT_ERROR  JSON {statusCode 437, ...}; then we exit
                      12  LOG         UTF-8 text, whole lines, ending in "\\n"
                      13  RESULT      u64 BE peak RSS in bytes + return value as JSON
                      14  ERROR       JSON {statusCode 430, ..., memUsage}

The instance runs one invocation at a time: read INVOKE, call
``handler(event, context)``, answer RESULT or ERROR, repeat until the socket
reaches end of file. ``sys.stdout``, ``sys.stderr`` and the root logger are
redirected into LOG frames; whatever is still buffered (a line without its
newline) is sent before the RESULT or ERROR frame of the invocation.
"""

import codecs
import io
import json
import logging
import os
import resource
import select
import socket
import struct
import sys
import threading
import time
import traceback

# Frame kinds.
INVOKE = 1
FORK = 2         # zygote mode: fork an instance that connects to the socket named in the payload
START = 3        # a forked instance: load the function now
SPARE = 4        # zygote mode: start a Node.js spare under a keeper (payload JSON: socket, argv, env)
READY = 10
INIT_ERROR = 11
LOG = 12
RESULT = 13
ERROR = 14
FORKED = 15      # zygote mode: the fork happened (payload: the child's pid)

MAX_PAYLOAD = 16 * 1024 * 1024          # a frame's length is at most this + 1
MAX_RESPONSE = 6 * 1024 * 1024          # a synchronous response is at most 6 MB (status 407 past it)
USER_EXCEPTION_MESSAGE = 'user code exception caught'
INIT_STATUS = 437
INVOKE_STATUS = 430

_HEADER = struct.Struct('>IB')          # length, kind
_RESULT_HEADER = struct.Struct('>IBQ')  # length, kind, peak RSS
_RSS_UNIT = 1 if sys.platform == 'darwin' else 1024   # ru_maxrss is KiB on Linux

_encode_json = json.JSONEncoder(ensure_ascii=False).encode   # == json.dumps(v, ensure_ascii=False)
_encode_json_ascii = json.JSONEncoder().encode
_decode_json = json.JSONDecoder().decode
_raw_decode_json = json.JSONDecoder().raw_decode
_getrusage = resource.getrusage
# The peak resident memory is the process's (its address space's) either way; asked of one thread, the kernel
# skips adding up every thread's CPU time.
_RUSAGE_WHO = getattr(resource, 'RUSAGE_THREAD', resource.RUSAGE_SELF)
_modules = sys.modules

_request_id = ''    # of the running invocation, for the log format

# fnlb sends the context first, and all of it but the request id is the same for every invocation of an instance:
# decoded the first time, then recognised by its text and copied.
_CONTEXT_HEAD = '{"context":{"request_id":"'
_EVENT_HEAD = ',"event":'
_context_text = None    # the context's members after the request id, the closing brace and _EVENT_HEAD
_context = None         # those members, decoded
_NO_EVENT = object()


class ProtocolError(Exception):
    pass


# --------------------------------------------------------------------------- socket

class Channel(object):
    """The connection to fnlb: buffered frame reads, locked frame writes.

    ``lock`` serialises writers (user threads may print while the main thread
    answers); hold it and call ``send_locked`` to send several frames in a row.
    """

    def __init__(self, path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A leading '@' names a socket in the abstract namespace (no file on disk).
        sock.connect('\0' + path[1:] if path.startswith('@') else path)
        self._sock = sock
        self._sendall = sock.sendall
        self._recv = sock.recv
        self._buf = b''     # received, not yet read
        # Input is waited for in poll(), for POLLIN only: a process blocked in recv() on a Unix socket is also
        # woken each time the other side takes in what this one wrote (its send buffer drains), which would
        # be a wasted wake-up per invocation.
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        self._poll = poller.poll
        self.lock = threading.Lock()

    def _fill(self, need):
        """Receive until ``need`` bytes are buffered; False at end of file."""
        chunks = [self._buf] if self._buf else []
        have = len(self._buf)
        while have < need:
            self._poll()
            # One recv() of up to 64 KiB usually brings in a whole INVOKE frame; a large one comes in pieces of
            # at most 1 MiB (each recv() allocates what it may receive).
            data = self._recv(min(max(65536, need - have), 1 << 20))
            if not data:
                return False
            chunks.append(data)
            have += len(data)
        self._buf = chunks[0] if len(chunks) == 1 else b''.join(chunks)
        return True

    def read_frame(self):
        """Return (kind, payload), or None at end of file."""
        if len(self._buf) < 5 and not self._fill(5):
            return None
        length, kind = _HEADER.unpack_from(self._buf)
        if length < 1 or length > MAX_PAYLOAD + 1:
            raise ProtocolError('frame length %d out of range' % length)
        end = 4 + length
        if len(self._buf) < end and not self._fill(end):
            return None
        buf = self._buf
        self._buf = buf[end:]
        return kind, buf[5:end]

    def send_locked(self, data):
        """Send one already-framed message; the caller holds ``lock``."""
        try:
            self._sendall(data)
        except OSError:
            os._exit(0)     # fnlb is gone: nobody is left to report to

    def send(self, kind, payload):
        data = _HEADER.pack(len(payload) + 1, kind) + payload
        with self.lock:
            self.send_locked(data)

    def close(self):
        self._sock.close()


# --------------------------------------------------------------------------- logs

class LogSink(object):
    """Collects text written to stdout/stderr and sends complete lines as LOG frames.

    Both streams share one sink so that their lines keep their relative order.
    """

    def __init__(self, channel):
        self._channel = channel
        self._lock = channel.lock
        self._pieces = []       # text written after the last newline

    def write(self, text):
        nl = text.rfind('\n')
        with self._lock:
            pieces = self._pieces
            if nl < 0:
                if text:
                    pieces.append(text)
                return
            end = nl + 1
            if end == len(text):
                lines, rest = text, None
            else:
                lines, rest = text[:end], text[end:]
            if pieces:
                pieces.append(lines)
                lines = ''.join(pieces)
                del pieces[:]
            if rest:
                pieces.append(rest)
            self._send_locked(lines)

    def flush_locked(self):
        """Send a pending partial line (completed with a newline); hold ``lock``."""
        pieces = self._pieces
        if pieces:
            pieces.append('\n')
            text = ''.join(pieces)
            del pieces[:]
            self._send_locked(text)

    def flush(self):
        with self._lock:
            self.flush_locked()

    def _send_locked(self, text):
        data = text.encode('utf-8', 'backslashreplace')
        if len(data) <= MAX_PAYLOAD:
            self._channel.send_locked(_HEADER.pack(len(data) + 1, LOG) + data)
            return
        # A giant write: split it into frames that fit (4 bytes per char at most).
        step = MAX_PAYLOAD // 4
        for start in range(0, len(text), step):
            chunk = text[start:start + step].encode('utf-8', 'backslashreplace')
            self._channel.send_locked(_HEADER.pack(len(chunk) + 1, LOG) + chunk)


class LogStream(io.TextIOBase):
    """Replacement for sys.stdout / sys.stderr that writes into a LogSink."""

    encoding = 'utf-8'
    errors = 'strict'
    newlines = None
    line_buffering = True
    mode = 'w'

    def __init__(self, sink, name, fd):
        self._sink_write = sink.write
        self._fd = fd
        self.name = name
        self.buffer = LogBuffer(self)

    def write(self, s):
        if s.__class__ is not str and not isinstance(s, str):
            raise TypeError('write() argument must be str, not %s' % type(s).__name__)
        self._sink_write(s)
        return len(s)

    def flush(self):
        pass    # lines are sent as soon as they are complete

    def close(self):
        pass    # stays usable: the bootstrap needs it after user code ran

    def isatty(self):
        return False

    def fileno(self):
        return self._fd     # the real pipe: subprocesses and C code write there

    def writable(self):
        return True

    def readable(self):
        return False

    def seekable(self):
        return False

    def reconfigure(self, **kwargs):
        pass


class LogBuffer(io.BufferedIOBase):
    """``sys.stdout.buffer``: bytes are decoded as UTF-8 and written as text."""

    def __init__(self, stream):
        self._stream = stream
        self._decode = codecs.getincrementaldecoder('utf-8')('replace').decode

    def write(self, b):
        data = bytes(b)
        self._stream.write(self._decode(data))
        return len(data)

    def flush(self):
        pass

    def close(self):
        pass

    def fileno(self):
        return self._stream.fileno()

    def isatty(self):
        return False

    def writable(self):
        return True


class CurrentStderrHandler(logging.StreamHandler):
    """A logging handler that writes to whatever ``sys.stderr`` is at the time."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class LogFormatter(logging.Formatter):
    """``[LEVEL]\\t2024-01-02T03:04:05.678Z\\t<request id>\\tmessage`` (UTC)."""

    converter = time.gmtime

    def format(self, record):
        record.request_id = _request_id
        return logging.Formatter.format(self, record)


def install_log_capture(channel):
    sink = LogSink(channel)
    sys.stdout = LogStream(sink, '<stdout>', 1)
    sys.stderr = LogStream(sink, '<stderr>', 2)
    handler = CurrentStderrHandler()
    handler.setFormatter(LogFormatter(
        '[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(request_id)s\t%(message)s',
        '%Y-%m-%dT%H:%M:%S'))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return sink


# --------------------------------------------------------------------------- errors

_THIS_FILE = Channel.__init__.__code__.co_filename


def format_traceback(exc):
    """The traceback of ``exc`` without the bootstrap's own leading frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == _THIS_FILE:
        tb = tb.tb_next
    return ''.join(traceback.format_exception(type(exc), exc, tb))


def error_payload(status, exc, mem_usage=None, message=None):
    if message is None:
        try:
            message = str(exc)
        except Exception:
            message = '<unprintable %s object>' % type(exc).__name__
    error = {
        'statusCode': status,
        'errorCode': -1,
        'errorMessage': message,
        'errorType': type(exc).__name__,
        'stackTrace': format_traceback(exc),
    }
    if mem_usage is not None:
        error['memUsage'] = mem_usage
    return json.dumps(error).encode('ascii')


def peak_rss():
    return _getrusage(_RUSAGE_WHO).ru_maxrss * _RSS_UNIT


def exit_like_python(sink, code):
    """End the process the way an uncaught SystemExit(code) would, minus cleanup."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xff
    else:
        sys.stderr.write('%s\n' % (code,))
        status = 1
    sink.flush()
    os._exit(status)


def die(sink, message, status):
    if sink is not None:
        sink.flush()
    os.write(2, ('fnlb bootstrap: %s\n' % message).encode('utf-8', 'backslashreplace'))
    os._exit(status)


# --------------------------------------------------------------------------- start

def setup_sys_path(code_dir):
    """The code directory first, then /opt (layers), like SCF's /var/user:/opt."""
    sys.path.insert(0, code_dir)
    if os.path.isdir('/opt') and '/opt' not in sys.path:
        sys.path.insert(1, '/opt')


def load_handler(spec):
    module_name, _, func_name = spec.rpartition('.')
    if not module_name or not func_name:
        raise ValueError('invalid handler %r: expected "file.function"' % spec)
    module_name = module_name.replace('/', '.')
    __import__(module_name)
    module = sys.modules[module_name]
    func = getattr(module, func_name)
    if not callable(func):
        raise TypeError('handler %s is not callable' % spec)
    return func


def init(channel, sink, spec):
    """Import the handler; send INIT_ERROR and exit if that fails."""
    try:
        return load_handler(spec)
    except SystemExit as exc:
        exit_like_python(sink, exc.code)
    except BaseException as exc:
        payload = error_payload(INIT_STATUS, exc)
        with channel.lock:
            sink.flush_locked()
            channel.send_locked(_HEADER.pack(len(payload) + 1, INIT_ERROR) + payload)
        os._exit(0)


# --------------------------------------------------------------------------- invoke

def apply_environ(environ):
    """Set ``K=V;K=V`` pairs from the context into os.environ, as SCF does."""
    env = os.environ
    for item in environ.split(';'):
        key, sep, value = item.partition('=')
        # Set (putenv) only what differs: usually nothing, from one invocation to the next.
        if key and sep and env.get(key) != value:
            env[key] = value


def encode_result(value):
    decimal = _modules.get('decimal')
    if decimal is not None and isinstance(value, decimal.Decimal):
        value = str(value)
    text = _encode_json(value)
    try:
        return text.encode('utf-8')
    except UnicodeEncodeError:      # lone surrogates: escape them instead
        return _encode_json_ascii(value).encode('ascii')


def send_error(channel, sink, exc, status=None, message=USER_EXCEPTION_MESSAGE):
    """An invocation failed: the platform's message, the exception in the stack trace (contract 2.2)."""
    payload = error_payload(status or INVOKE_STATUS, exc, peak_rss(), message)
    with channel.lock:
        sink.flush_locked()
        channel.send_locked(_HEADER.pack(len(payload) + 1, ERROR) + payload)


def send_result(channel, sink, value):
    try:
        body = encode_result(value)
    except Exception as exc:
        send_error(channel, sink, exc, message=None)
        return
    if len(body) > MAX_RESPONSE:
        send_error(channel, sink, ValueError(
            'return value is too large: %d bytes of JSON (at most %d)' % (len(body), MAX_RESPONSE)),
            status=407, message='The size of response exceeds the upper limit (6MB)')
        return
    frame = _RESULT_HEADER.pack(len(body) + 9, RESULT, peak_rss()) + body
    with channel.lock:
        sink.flush_locked()
        channel.send_locked(frame)


def read_request(text):
    """The event and context of an INVOKE payload (a fresh context dict each time: the handler may change it)."""
    global _context_text, _context
    head = len(_CONTEXT_HEAD)
    id_end = text.find('"', head) if text.startswith(_CONTEXT_HEAD) else -1
    members = id_end + 2    # past the request id's closing quote and comma
    # fnlb's request ids need no escapes; any other payload is decoded in full.
    if id_end > 0 and text[id_end - 1] != '\\' and text[id_end:members] == '",':
        if _context_text is not None and text.startswith(_context_text, members):
            event = _event_at(text, members + len(_context_text))
            if event is not _NO_EVENT:
                context = dict(_context)
                context['request_id'] = text[head:id_end]
                return event, context
        else:
            context, end = _raw_decode_json(text, len('{"context":'))
            event = _event_at(text, end + len(_EVENT_HEAD)) if text.startswith(_EVENT_HEAD, end) else _NO_EVENT
            if event is not _NO_EVENT and isinstance(context, dict):
                _context_text = text[members:end + len(_EVENT_HEAD)]
                _context = {k: v for k, v in context.items() if k != 'request_id'}
                return event, context
    request = _decode_json(text)
    context = request.get('context')
    return request.get('event'), {} if context is None else context


def _event_at(text, start):
    """The event that starts at ``start`` and ends the payload, or _NO_EVENT."""
    try:
        event, end = _raw_decode_json(text, start)
    except ValueError:
        return _NO_EVENT
    return event if end == len(text) - 1 and text[end] == '}' else _NO_EVENT


def invoke(channel, sink, handler, payload):
    global _request_id
    try:
        event, context = read_request(payload.decode('utf-8'))
        environ = context.get('environ')
        if environ:
            apply_environ(environ)
        _request_id = context.get('request_id') or ''
    except Exception as exc:
        send_error(channel, sink, exc)
        return

    try:
        value = handler(event, context)
    except Exception as exc:
        send_error(channel, sink, exc)
        return
    except SystemExit as exc:
        exit_like_python(sink, exc.code)
    except BaseException as exc:   # KeyboardInterrupt and the like end the process
        sys.stderr.write(format_traceback(exc))
        sink.flush()
        os._exit(1)
    send_result(channel, sink, value)


def serve(channel, sink, handler):
    read_frame = channel.read_frame
    while True:
        try:
            frame = read_frame()
        except ProtocolError as exc:
            die(sink, 'protocol error: %s' % exc, 2)
        if frame is None:
            sink.flush()
            os._exit(0)
        kind, payload = frame
        if kind != INVOKE:
            die(sink, 'protocol error: unexpected frame kind %d' % kind, 2)
        invoke(channel, sink, handler, payload)


def next_frame(channel):
    """The next frame; at end of file the process exits, on a protocol error it dies."""
    try:
        frame = channel.read_frame()
    except ProtocolError as exc:
        die(None, 'protocol error: %s' % exc, 2)
    if frame is None:
        os._exit(0)
    return frame


def run_instance(socket_path, confinement=None):
    """Connect to fnlb, load the handler, serve invocations until fnlb closes the channel.

    A zygote's child (``confinement`` given) connects first and takes on a function only when fnlb sends START with
    the function (its package, environment and user): fnlb forks it ahead of time, puts it in its cgroup, and starts
    it when a request needs it.
    """
    try:
        channel = Channel(socket_path)
    except OSError as exc:
        die(None, 'cannot connect to %s: %s' % (socket_path, exc), 2)
    if confinement is not None:
        try:
            confinement.prepare()
        except OSError as exc:
            die(None, 'cannot prepare the instance: %s' % exc, 2)
        capture_raw_output(channel)
        kind, payload = next_frame(channel)
        if kind != START:
            die(None, 'protocol error: expected START, got frame kind %d' % kind, 2)
        try:
            confinement.take_on(_decode_json(payload.decode('utf-8')))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            die(None, 'cannot take on the function: %s' % exc, 2)

    spec = os.environ.get('_HANDLER', '')
    code_dir = os.environ.get('USER_CODE_ROOT') or os.getcwd()
    sink = install_log_capture(channel)
    setup_sys_path(code_dir)
    handler = init(channel, sink, spec)
    channel.send(READY, b'')
    serve(channel, sink, handler)


def capture_raw_output(channel):
    """What the instance's processes write to their standard output and error outside Python's ``sys.stdout``
    (subprocesses, native code) comes to fnlb as LOG frames, read from a pipe in pieces of at most 64 KiB: a forked
    instance's descriptors 1 and 2 would otherwise be its zygote's, shared by every function."""
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        while True:
            data = os.read(read_end, 65536)
            if not data:
                return
            channel.send(LOG, data)

    threading.Thread(target=pump, name='fnlb-raw-output', daemon=True).start()


# Confinement of a zygote's children (Linux).
CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
# seccomp(2)'s number: the filter is installed on every thread of the process at once (the thread that forwards
# raw output was started before it).
_SYS_SECCOMP = {'x86_64': 317, 'aarch64': 277}.get(os.uname().machine)


class Confinement(object):
    """How a zygote's child takes on a function when START names it (``take_on``), in this order:

    * with ``tmp_bytes`` (fnlb runs as root, in a sandbox): a mount namespace of its own (made while it waits as a
      spare, ``prepare``) with a fresh tmpfs of ``tmp_bytes`` on ``/tmp`` (its pages are charged to the instance's
      memory cgroup and freed with the instance) and a ``/proc`` of its own that shows only the processes of its
      user; at START, the function's package bound read-only at ``USER_CODE_ROOT`` and every other package
      (``code_root``) covered by an empty file system;
    * the function's environment, in place of the zygote's, and its package as working directory;
    * the function's user (which leaves no capability, and makes the process undumpable, so that no other process
      of that user can read its memory);
    * ``no_new_privs`` and the system-call filter fnlb wrote (``filter_path``), on every thread of the process (the
      one forwarding raw output included), which refuses every later namespace, mount or ``ptrace``.

    The zygote keeps the capabilities the first and third steps need and runs none of the functions' code.
    """

    def __init__(self, filter_path, tmp_bytes, code_root):
        import ctypes
        self._ctypes = ctypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        with open(filter_path, 'rb') as f:
            program = f.read()
        if not program or len(program) % 8:
            raise ValueError('%s does not hold a filter program' % filter_path)

        class SockFprog(ctypes.Structure):
            _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_char_p)]

        self._program = ctypes.create_string_buffer(program, len(program))
        self._fprog = SockFprog(len(program) // 8, ctypes.cast(self._program, ctypes.c_char_p))
        self._tmp_bytes = tmp_bytes
        self._code_root = code_root

    def _check(self, result, what):
        if result != 0:
            err = self._ctypes.get_errno()
            raise OSError(err, '%s: %s' % (what, os.strerror(err)))

    def _mount(self, source, target, fstype, flags, options=None):
        self._check(self._libc.mount(source.encode(), target.encode(), fstype and fstype.encode(), flags,
                                     options and options.encode()), 'mount %s' % target)

    def show_environment(self, env):
        """Writes the function's environment over the zygote's in the process's environment block, so that
        ``/proc/<pid>/environ`` (and ``ps``) show the function's, as if the instance had been started with it. fnlb
        gives the zygote room for it (``FNLB_ENVIRONMENT_ROOM``); what does not fit is left out there (the process's
        own environment holds all of it)."""
        with open('/proc/self/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        # Fields 50 and 51 of stat(5): env_start and env_end; the list starts at field 3.
        start, end = int(fields[47]), int(fields[48])
        size = end - start
        block = b''
        for key, value in env.items():
            entry = ('%s=%s' % (key, value)).encode('utf-8', 'surrogateescape') + b'\0'
            if len(block) + len(entry) > size:
                break
            block += entry
        self._ctypes.memmove(start, block + b'\0' * (size - len(block)), size)

    def prepare(self):
        """What does not depend on the function, done while the child waits as a spare: its mount namespace, its
        ``/tmp`` and its ``/proc``."""
        if self._tmp_bytes:
            self._check(self._libc.unshare(CLONE_NEWNS), 'unshare')
            self._mount('none', '/', None, MS_REC | MS_PRIVATE)
            self._mount('tmpfs', '/tmp', 'tmpfs', MS_NOSUID | MS_NODEV, 'size=%d,mode=1777' % self._tmp_bytes)
            self._mount('proc', '/proc', 'proc', MS_NOSUID | MS_NODEV | MS_NOEXEC, 'hidepid=2')

    def bind_package(self, code, code_dir):
        """The mount half of ``take_on``: the package ``code`` bound read-only at ``code_dir``, every other package
        covered (with ``tmp_bytes`` only: without it there is no mount namespace of the instance's own)."""
        if not code or '/' in code or code.startswith('.'):
            raise ValueError('no code package named %r' % code)
        if self._tmp_bytes:
            self._mount(os.path.join(self._code_root, code), code_dir, None, MS_BIND | MS_REC)
            self._mount('none', code_dir, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
            # Every other package is covered by an empty read-only file system (mounting is cheap; unmounting waits
            # for the kernel's grace period).
            self._mount('none', self._code_root, 'tmpfs', MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, 'size=4k,mode=0')

    def restrict(self):
        """``no_new_privs`` and the system-call filter, on every thread of the process."""
        if _SYS_SECCOMP is None:
            raise OSError(0, 'no system-call filter for %s' % os.uname().machine)
        self._check(self._libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 'prctl(PR_SET_NO_NEW_PRIVS)')
        self._check(self._libc.syscall(_SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC,
                                       self._ctypes.byref(self._fprog)), 'seccomp(SECCOMP_SET_MODE_FILTER)')

    def take_on(self, start):
        code = start['code']
        env = dict(start.get('env') or [])
        code_dir = env.get('USER_CODE_ROOT') or os.path.join(self._code_root, code)
        self.bind_package(code, code_dir)
        os.chdir(code_dir)
        os.environ.clear()
        os.environ.update(env)
        self.show_environment(env)
        uid = start.get('uid')
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        self.restrict()


# The descriptors a Node.js spare finds its keeper's link and the reading end of its raw output on.
SPARE_KEEPER_FD = 3
SPARE_OUTPUT_FD = 4
# The most a spare may ask its keeper (one JSON line).
SPARE_REQUEST_BYTES = 4096


def run_keeper(spare, confinement):
    """The keeper of a Node.js spare (a child of the zygote; docs/function-protocol.md). Node.js cannot mount or make
    namespaces, so the keeper does it for the interpreter it starts: it makes the spare's mount namespace, ``/tmp`` and
    ``/proc`` (``Confinement.prepare``); it connects to the spare's socket and waits for one byte (fnlb has moved it
    into the spare's cgroup); then it forks the interpreter, which connects to the same socket, which becomes a session leader, sets
    ``no_new_privs``, installs the filter and executes Node.js with ``spare['argv']`` and ``spare['env']``, a link to
    the keeper on descriptor 3, its descriptors 1 and 2 a pipe whose reading end is descriptor 4. When the spare takes
    on a function it asks the keeper, over the link, to bind its package (``{"code": …, "code_dir": …}``, one line);
    the keeper answers ``ok`` (or ``error: …``) and exits. It exits as well when the link ends (the spare is gone).
    The kernel reaps it (``SIGCHLD`` ignored, as in the zygote); the spare is then a child of the sandbox's init."""
    import signal
    os.setsid()
    # Not the zygote's environment: /proc/<pid>/environ and ps tell a keeper from the zygote and its spares.
    confinement.show_environment({'FNLB_NODE_KEEPER': '1'})
    confinement.prepare()
    # fnlb moves the keeper into the spare's cgroup, then says so: the interpreter is born inside it.
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.connect(spare['socket'])
    if not control.recv(1):
        os._exit(0)
    link, theirs = socket.socketpair()
    output_read, output_write = os.pipe()
    null = os.open('/dev/null', os.O_RDONLY)
    if os.fork() == 0:
        report = 2
        try:
            report = os.dup(2)      # where a failed exec is told (descriptor 2 becomes the spare's)
            os.setsid()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.dup2(null, 0)
            os.dup2(output_write, 1)
            os.dup2(output_write, 2)
            os.dup2(theirs.fileno(), SPARE_KEEPER_FD)
            os.dup2(output_read, SPARE_OUTPUT_FD)
            confinement.restrict()
            argv = spare['argv']
            os.execve(argv[0], argv, dict(spare['env']))
        except BaseException as exc:
            os.write(report, ('fnlb keeper: cannot start %s: %s\n' % (spare.get('argv'), exc)).encode())
        finally:
            os._exit(127)
    # The control connection stays open until the keeper exits: fnlb sees a keeper (or its spare) gone before the
    # spare connected.
    theirs.close()
    for fd in (output_read, output_write, null):
        os.close(fd)
    request = b''
    while not request.endswith(b'\n') and len(request) < SPARE_REQUEST_BYTES:
        data = link.recv(SPARE_REQUEST_BYTES - len(request))
        if not data:
            os._exit(0)
        request += data
    try:
        asked = _decode_json(request.decode('utf-8'))
        confinement.bind_package(asked['code'], asked['code_dir'])
        answer = b'ok\n'
    except (OSError, ValueError, KeyError, TypeError) as exc:
        answer = ('error: %s\n' % exc).encode('utf-8', 'backslashreplace')
    link.sendall(answer)
    os._exit(0)


def run_zygote(socket_path, confinement):
    """Fork server: a template with the runtime loaded that forks instances on request.

    One zygote serves every function of the runtime. Each FORK frame names the socket the new instance connects
    to. The child becomes the leader of a session and process group of its own (fnlb kills instances by group),
    connects, and waits for START to take on a function (``Confinement``); then it runs as any instance does: it
    imports the user's module itself, so the module's start-up code runs once per instance, as on SCF. A SPARE
    frame forks the keeper of a Node.js spare instead (``run_keeper``). Exited children are reaped by the kernel
    (SIGCHLD ignored here, restored in the child).
    """
    import signal
    try:
        channel = Channel(socket_path)
    except OSError as exc:
        die(None, 'cannot connect to %s: %s' % (socket_path, exc), 2)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # Everything loaded so far is shared with the children: keep the collector off it (fewer copied pages).
    import gc
    gc.collect()
    if hasattr(gc, 'freeze'):
        gc.freeze()
    channel.send(READY, b'')
    while True:
        kind, payload = next_frame(channel)
        if kind == FORK:
            child_socket = payload.decode('utf-8')
            pid = os.fork()
            if pid == 0:
                try:
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.setsid()
                    channel.close()
                    run_instance(child_socket, confinement)
                finally:
                    os._exit(1)
        elif kind == SPARE:
            spare = _decode_json(payload.decode('utf-8'))
            pid = os.fork()
            if pid == 0:
                try:
                    channel.close()
                    run_keeper(spare, confinement)
                except BaseException as exc:
                    os.write(2, ('fnlb keeper: %s\n' % exc).encode('utf-8', 'backslashreplace'))
                finally:
                    os._exit(1)
        else:
            die(None, 'protocol error: unexpected frame kind %d' % kind, 2)
        channel.send(FORKED, str(pid).encode('ascii'))


def main():
    # Removed so that user subprocesses do not see (or try) the socket.
    socket_path = os.environ.pop('FNLB_RUNTIME_SOCKET', '')
    zygote = os.environ.pop('FNLB_RUNTIME_ZYGOTE', '') == '1'
    filter_path = os.environ.pop('FNLB_SECCOMP_FILTER', '')
    tmp_bytes = int(os.environ.pop('FNLB_PRIVATE_TMP_BYTES', '0') or 0)
    code_root = os.environ.pop('FNLB_CODE_ROOT', '')
    os.environ.pop('FNLB_ENVIRONMENT_ROOM', None)
    if not socket_path:
        die(None, 'FNLB_RUNTIME_SOCKET is not set', 2)
    if zygote:
        try:
            confinement = Confinement(filter_path, tmp_bytes, code_root)
        except (OSError, ValueError) as exc:
            die(None, 'cannot prepare the confinement of instances: %s' % exc, 2)
        run_zygote(socket_path, confinement)
    else:
        run_instance(socket_path)


if __name__ == '__main__':
    main()
