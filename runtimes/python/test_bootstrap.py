"""Host-side tests for runtimes/python/bootstrap.py (stdlib only).

Each test plays fnlb: it writes handler code into a temporary directory, listens on
a Unix socket, starts ``/usr/bin/python3 -I -B bootstrap.py`` the way fnlb does
(cwd = code dir, a clean environment) and speaks the framed protocol of
docs/function-protocol.md to it.

Run: /usr/bin/python3 runtimes/python/test_bootstrap.py
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

PYTHON = '/usr/bin/python3'
BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bootstrap.py')
TIMEOUT = 20.0

INVOKE, READY, INIT_ERROR, LOG, RESULT, ERROR = 1, 10, 11, 12, 13, 14
HEADER = struct.Struct('>IB')

INDEX_PY = '''
import logging
import os
import sys
import threading
from decimal import Decimal

counter = 0
print("imported index")


def main_handler(event, context):
    global counter
    counter += 1
    print("hello", event.get("name"))
    logging.info("info line %d", counter)
    logging.warning("warn line")
    sys.stderr.write("no newline yet")
    return {"counter": counter, "name": event.get("name"), "text": "h\\u00e9llo \\u20ac",
            "foo": os.environ.get("FOO"), "baz": os.environ.get("BAZ")}


def echo(event, context):
    return event


def raises(event, context):
    print("about to fail")
    raise ValueError("boom %s" % event.get("n"))


def bad_return(event, context):
    return {"s": {1, 2}}


def huge(event, context):
    return "x" * (6 * 1024 * 1024 + 1)


def decimal_return(event, context):
    return Decimal("1.50")


def exits(event, context):
    print("bye")
    sys.exit(event.get("code", 0))


def chatty(event, context):
    sys.stdout.write("a")
    sys.stdout.write("b\\nc")
    sys.stdout.write("d\\ne\\nf")
    print("g", end="")
    sys.stdout.buffer.write("\\u00e9\\n".encode("utf-8")[:1])
    sys.stdout.buffer.write("\\u00e9\\n".encode("utf-8")[1:])
    return None


def stdio_props(event, context):
    out = sys.stdout
    return {"isatty": out.isatty(), "encoding": out.encoding, "writable": out.writable(),
            "fileno_out": out.fileno(), "fileno_err": sys.stderr.fileno(),
            "write_len": out.write("xyz\\n"), "flush": out.flush()}


def threads(event, context):
    def work(i):
        # One write() per line: print() itself writes text and "\\n" separately,
        # so lines of concurrent print()s may interleave (as with a real stdout).
        for j in range(50):
            sys.stdout.write("thread %d line %d\\n" % (i, j))
    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return "done"


def context_echo(event, context):
    return {"request_id": context.get("request_id"), "keys": sorted(context)}
'''


def compact(value):
    return json.dumps(value, separators=(',', ':'))


def fnlb_request(event, context):
    """An INVOKE payload as fnlb writes it: the context first, the request id its first member, no spaces."""
    rest = dict(context)
    request_id = rest.pop('request_id')
    return '{"context":{"request_id":%s,%s},"event":%s}' % (json.dumps(request_id), compact(rest)[1:-1], compact(event))


def context_for(request_id='req-1', environ=''):
    return {
        'memory_limit_in_mb': 128,
        'time_limit_in_ms': 3000,
        'request_id': request_id,
        'environment': json.dumps({'SCF_NAMESPACE': 'default'}),
        'environ': environ,
        'function_version': '$LATEST',
        'function_name': 'fn',
        'namespace': 'default',
        'tencentcloud_region': 'ap-guangzhou',
        'tencentcloud_appid': '1250000000',
        'tencentcloud_uin': '100000000001',
    }


class Instance(object):
    """One bootstrap process plus the host end of its socket."""

    def __init__(self, code_dir, handler):
        self.sock_dir = tempfile.mkdtemp(prefix='fnlb-sock-')
        path = os.path.join(self.sock_dir, 'rt.sock')
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT)
        env = {
            'FNLB_RUNTIME_SOCKET': path,
            '_HANDLER': handler,
            'USER_CODE_ROOT': code_dir,
            'SCF_RUNTIME': 'Python3.11',
            'SCF_FUNCTIONNAME': 'fn',
            'SCF_FUNCTIONVERSION': '$LATEST',
            'SCF_NAMESPACE': 'default',
            'TENCENTCLOUD_REGION': 'ap-guangzhou',
            'TENCENTCLOUD_APPID': '1250000000',
            'TENCENTCLOUD_UIN': '100000000001',
            'TENCENTCLOUD_RUNENV': 'SCF',
            'TENCENTCLOUD_TZ': 'UTC',
            'PYTHONDONTWRITEBYTECODE': 'x',
            'PATH': '/usr/local/bin:/usr/bin:/bin',
            'HOME': code_dir,
            'LANG': 'C.UTF-8',
        }
        self.proc = subprocess.Popen(
            [PYTHON, '-I', '-B', BOOTSTRAP], cwd=code_dir, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.conn, _ = self.listener.accept()
        except socket.timeout:
            self.close()
            raise AssertionError('bootstrap did not connect')
        self.conn.settimeout(TIMEOUT)

    def _read_exact(self, n):
        chunks = []
        while n:
            chunk = self.conn.recv(n)
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b''.join(chunks)

    def read_frame(self):
        """(kind, payload) or None at EOF."""
        head = self._read_exact(5)
        if head is None:
            return None
        length, kind = HEADER.unpack(head)
        payload = self._read_exact(length - 1) if length > 1 else b''
        if payload is None:
            raise AssertionError('EOF inside a frame')
        return kind, payload

    def read_until(self, final_kinds):
        """Read LOG frames until one of final_kinds; return (logs, kind, payload)."""
        logs = []
        while True:
            frame = self.read_frame()
            if frame is None:
                return logs, None, None
            kind, payload = frame
            if kind == LOG:
                logs.append(payload.decode('utf-8'))
            elif kind in final_kinds:
                return logs, kind, payload
            else:
                raise AssertionError('unexpected frame kind %d' % kind)

    def send(self, kind, payload):
        self.conn.sendall(HEADER.pack(len(payload) + 1, kind) + payload)

    def invoke(self, event, context=None):
        self.send(INVOKE, fnlb_request(event, context or context_for()).encode())
        return self.read_until((RESULT, ERROR))

    def wait(self):
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError('bootstrap did not exit')

    def close(self):
        for s in (getattr(self, 'conn', None), self.listener):
            if s is not None:
                s.close()
        if self.proc.poll() is None:
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        shutil.rmtree(self.sock_dir, ignore_errors=True)


class BootstrapTest(unittest.TestCase):

    def setUp(self):
        self.code_dir = tempfile.mkdtemp(prefix='fnlb-code-')
        self.write('index.py', INDEX_PY)
        self.instances = []

    def tearDown(self):
        for inst in self.instances:
            inst.close()
        shutil.rmtree(self.code_dir, ignore_errors=True)

    def write(self, name, text):
        with open(os.path.join(self.code_dir, name), 'w') as f:
            f.write(textwrap.dedent(text))

    def start(self, handler):
        inst = Instance(self.code_dir, handler)
        self.instances.append(inst)
        return inst

    def start_ready(self, handler):
        inst = self.start(handler)
        logs, kind, payload = inst.read_until((READY, INIT_ERROR))
        self.assertEqual(kind, READY, payload)
        self.assertEqual(payload, b'')
        return inst, logs

    def assert_init_error(self, handler):
        inst = self.start(handler)
        logs, kind, payload = inst.read_until((READY, INIT_ERROR))
        self.assertEqual(kind, INIT_ERROR)
        err = json.loads(payload)
        self.assertEqual(err['statusCode'], 437)
        self.assertEqual(err['errorCode'], -1)
        for key in ('errorMessage', 'errorType', 'stackTrace'):
            self.assertIsInstance(err[key], str)
        self.assertIsNone(inst.read_frame())    # then it exits
        self.assertEqual(inst.wait(), 0)
        return err, logs

    # ------------------------------------------------------------------ tests

    def test_ready_result_logs_and_warm_reuse(self):
        inst, logs = self.start_ready('index.main_handler')
        self.assertEqual(logs, ['imported index\n'])     # import-time output, before READY

        for n in (1, 2, 3):
            ctx = context_for('req-%d' % n, environ='FOO=bar;;BAZ=a=b;')
            logs, kind, payload = inst.invoke({'name': 'x'}, ctx)
            self.assertEqual(kind, RESULT, payload)
            rss = struct.unpack('>Q', payload[:8])[0]
            self.assertGreater(rss, 1024 * 1024)
            self.assertLess(rss, 1024 * 1024 * 1024)
            text = payload[8:].decode('utf-8')
            self.assertEqual(
                text,
                '{"counter": %d, "name": "x", "text": "h\u00e9llo \u20ac", '
                '"foo": "bar", "baz": "a=b"}' % n)
            self.assertEqual(len(logs), 4, logs)
            self.assertEqual(logs[0], 'hello x\n')
            self.assertTrue(logs[1].startswith('[INFO]\t'), logs[1])
            self.assertTrue(logs[1].endswith('\treq-%d\tinfo line %d\n' % (n, n)), logs[1])
            self.assertTrue(logs[2].startswith('[WARNING]\t'), logs[2])
            self.assertTrue(logs[2].endswith('\twarn line\n'), logs[2])
            self.assertEqual(logs[3], 'no newline yet\n')   # partial line flushed before RESULT
            for line in logs:
                self.assertTrue(line.endswith('\n'))

        inst.conn.close()                                    # EOF -> clean exit
        self.assertEqual(inst.wait(), 0)

    def test_exception_gives_error_and_instance_survives(self):
        inst, _ = self.start_ready('index.raises')
        for n in (1, 2):
            logs, kind, payload = inst.invoke({'n': n})
            self.assertEqual(kind, ERROR)
            self.assertEqual(logs, ['about to fail\n'])
            err = json.loads(payload)
            self.assertEqual(err['statusCode'], 430)
            self.assertEqual(err['errorCode'], -1)
            self.assertEqual(err['errorMessage'], 'user code exception caught')
            self.assertIn('ValueError: boom %d' % n, err['stackTrace'])
            self.assertEqual(err['errorType'], 'ValueError')
            self.assertIn('Traceback', err['stackTrace'])
            self.assertIn('raise ValueError', err['stackTrace'])
            self.assertIn('ValueError: boom', err['stackTrace'])
            self.assertIsInstance(err['memUsage'], int)
            self.assertGreater(err['memUsage'], 0)

    def test_non_serialisable_return_gives_error(self):
        inst, _ = self.start_ready('index.bad_return')
        logs, kind, payload = inst.invoke({})
        self.assertEqual(kind, ERROR)
        err = json.loads(payload)
        self.assertEqual(err['statusCode'], 430)
        self.assertEqual(err['errorType'], 'TypeError')
        self.assertIn('not JSON serializable', err['errorMessage'])
        self.assertIn('memUsage', err)

    def test_response_over_6_mb_is_407(self):
        inst, _ = self.start_ready('index.huge')
        logs, kind, payload = inst.invoke({})
        self.assertEqual(kind, ERROR)
        err = json.loads(payload)
        self.assertEqual(err['statusCode'], 407)
        self.assertEqual(err['errorMessage'], 'The size of response exceeds the upper limit (6MB)')

    def test_decimal_return_becomes_string(self):
        inst, _ = self.start_ready('index.decimal_return')
        _, kind, payload = inst.invoke({})
        self.assertEqual(kind, RESULT)
        self.assertEqual(payload[8:], b'"1.50"')

    def test_none_return_and_partial_writes(self):
        inst, _ = self.start_ready('index.chatty')
        logs, kind, payload = inst.invoke({})
        self.assertEqual(kind, RESULT)
        self.assertEqual(payload[8:], b'null')
        self.assertEqual(''.join(logs), 'ab\ncd\ne\nfg\u00e9\n')
        self.assertEqual(logs, ['ab\n', 'cd\ne\n', 'fg\u00e9\n'])

    def test_stdio_properties(self):
        inst, _ = self.start_ready('index.stdio_props')
        logs, kind, payload = inst.invoke({})
        self.assertEqual(kind, RESULT, payload)
        self.assertEqual(json.loads(payload[8:].decode()), {
            'isatty': False, 'encoding': 'utf-8', 'writable': True,
            'fileno_out': 1, 'fileno_err': 2, 'write_len': 4, 'flush': None})
        self.assertEqual(logs, ['xyz\n'])

    def test_threads_do_not_corrupt_frames(self):
        inst, _ = self.start_ready('index.threads')
        logs, kind, payload = inst.invoke({})
        self.assertEqual(kind, RESULT)
        lines = ''.join(logs).splitlines()
        self.assertEqual(len(lines), 200)
        self.assertEqual(len(set(lines)), 200)

    def test_large_event_round_trip(self):
        inst, _ = self.start_ready('index.echo')
        event = {'blob': 'x' * (3 * 1024 * 1024), 'u': '\u4e2d\u6587'}
        _, kind, payload = inst.invoke(event)
        self.assertEqual(kind, RESULT)
        self.assertEqual(json.loads(payload[8:].decode('utf-8')), event)

    def test_frames_split_and_joined_on_the_wire(self):
        inst, _ = self.start_ready('index.echo')
        frames = b''.join(
            HEADER.pack(len(body) + 1, INVOKE) + body
            for body in (json.dumps({'event': {'n': n}, 'context': context_for()}).encode() for n in (1, 2)))
        # Two frames in one write: both are answered, in order.
        inst.conn.sendall(frames)
        for n in (1, 2):
            _, kind, payload = inst.read_until((RESULT, ERROR))
            self.assertEqual((kind, json.loads(payload[8:])), (RESULT, {'n': n}))
        # One frame dribbled in a few bytes at a time: it is read whole.
        first = frames[:len(frames) // 2]     # the two frames are the same length
        for at in range(0, len(first), 7):
            inst.conn.sendall(first[at:at + 7])
            time.sleep(0.001)
        _, kind, payload = inst.read_until((RESULT, ERROR))
        self.assertEqual((kind, json.loads(payload[8:])), (RESULT, {'n': 1}))

    def test_context_is_passed(self):
        inst, _ = self.start_ready('index.context_echo')
        _, kind, payload = inst.invoke({}, context_for('abc-123'))
        self.assertEqual(kind, RESULT)
        got = json.loads(payload[8:].decode())
        self.assertEqual(got['request_id'], 'abc-123')
        self.assertEqual(got['keys'], sorted(context_for()))

    def test_system_exit_ends_process(self):
        inst, _ = self.start_ready('index.exits')
        logs, kind, _ = inst.invoke({'code': 3})
        self.assertIsNone(kind)                 # EOF: fnlb answers 439
        self.assertEqual(logs, ['bye\n'])
        self.assertEqual(inst.wait(), 3)

    def test_missing_module(self):
        err, _ = self.assert_init_error('nosuchmodule.main_handler')
        self.assertEqual(err['errorType'], 'ModuleNotFoundError')
        self.assertIn('nosuchmodule', err['errorMessage'])

    def test_missing_function(self):
        err, logs = self.assert_init_error('index.nosuchfunction')
        self.assertEqual(err['errorType'], 'AttributeError')
        self.assertIn('nosuchfunction', err['errorMessage'])
        self.assertEqual(logs, ['imported index\n'])

    def test_syntax_error(self):
        self.write('broken.py', '''
            x = 1
            def main_handler(event, context)
                return 1
        ''')
        err, _ = self.assert_init_error('broken.main_handler')
        self.assertEqual(err['errorType'], 'SyntaxError')
        self.assertIn('line 3', err['errorMessage'])
        self.assertIn('broken.py', err['stackTrace'])
        self.assertIn('SyntaxError', err['stackTrace'])
        self.assertIn('def main_handler(event, context)', err['stackTrace'])

    def test_import_time_exception(self):
        self.write('explodes.py', '''
            raise RuntimeError("cannot start")
        ''')
        err, _ = self.assert_init_error('explodes.main_handler')
        self.assertEqual(err['errorType'], 'RuntimeError')
        self.assertEqual(err['errorMessage'], 'cannot start')
        self.assertIn('Traceback', err['stackTrace'])

    def test_bad_handler_spec(self):
        err, _ = self.assert_init_error('nodot')
        self.assertEqual(err['errorType'], 'ValueError')

    def test_throughput(self):
        inst, _ = self.start_ready('index.echo')
        body = json.dumps({'event': {'k': 'v'}, 'context': context_for()}).encode()
        frame = HEADER.pack(len(body) + 1, INVOKE) + body
        n = 2000
        start = time.perf_counter()
        for _ in range(n):
            inst.conn.sendall(frame)
            kind, payload = inst.read_frame()
            assert kind == RESULT
        elapsed = time.perf_counter() - start
        sys.stderr.write('\n  [throughput] %d sequential invocations: %.0f/s (%.1f us each)\n'
                         % (n, n / elapsed, elapsed / n * 1e6))


class ReadRequestTest(unittest.TestCase):
    """The payload decoding itself, in this process."""

    def setUp(self):
        sys.path.insert(0, os.path.dirname(BOOTSTRAP))
        import bootstrap
        self.bootstrap = bootstrap
        bootstrap._context_text = bootstrap._context = None

    def tearDown(self):
        sys.path.remove(os.path.dirname(BOOTSTRAP))

    def test_same_context_is_decoded_once_and_copied_each_time(self):
        read = self.bootstrap.read_request
        # The event may hold anything, even what looks like the payload's own keys.
        events = [{'n': n, 'text': 'é},"event":{"context":', 'list': [n, None, True]} for n in range(3)]
        for n, event in enumerate(events):
            got_event, got_context = read(fnlb_request(event, context_for('req-%d' % n)))
            self.assertEqual(got_event, event)
            self.assertEqual(got_context, context_for('req-%d' % n))
            got_context['memory_limit_in_mb'] = 1     # the handler's copy: the next one is whole
        self.assertIsNotNone(self.bootstrap._context_text, 'the context was learned')

    def test_other_contexts_and_orders_are_decoded_in_full(self):
        read = self.bootstrap.read_request
        requests = [
            (fnlb_request({'a': 1}, context_for('r1')), {'a': 1}, context_for('r1')),
            (fnlb_request({'a': 2}, context_for('r2', environ='K=v')), {'a': 2}, context_for('r2', environ='K=v')),
            (json.dumps({'event': {'a': 3}, 'context': context_for('r3')}), {'a': 3}, context_for('r3')),
            (fnlb_request({'a': 4}, context_for('r\\"4')), {'a': 4}, context_for('r\\"4')),
            ('{"context":{"request_id":"r5"},"event":[5]}', [5], {'request_id': 'r5'}),
            ('{"event":6}', 6, {}),
            ('{"context":{"request_id":"r7","a":1},"event":7,"more":1}', 7, {'request_id': 'r7', 'a': 1}),
        ]
        for text, event, context in requests:
            self.assertEqual(read(text), (event, context), text)


if __name__ == '__main__':
    unittest.main(verbosity=2)
