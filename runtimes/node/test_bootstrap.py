"""Host-side tests for runtimes/node/bootstrap.js (Python stdlib only).

Each test plays fnlb: it writes handler code into a temporary directory, listens on
a Unix socket, starts ``node bootstrap.js`` the way fnlb does (cwd = code dir, a
clean environment) and speaks the framed protocol of docs/function-protocol.md to it.

Run: /usr/bin/python3 runtimes/node/test_bootstrap.py   (NODE=/path/to/node to pick another node)
"""

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import uuid

NODE = os.environ.get('NODE') or shutil.which('node') or '/usr/bin/node'
BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bootstrap.js')
TIMEOUT = 20.0

INVOKE, READY, INIT_ERROR, LOG, RESULT, ERROR = 1, 10, 11, 12, 13, 14
HEADER = struct.Struct('>IB')
ISO = r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z'

INDEX_JS = r'''
let counter = 0;
console.log('imported index');

exports.main_handler = async (event, context) => {
  counter += 1;
  console.log('hello', event.name);
  console.info('info line %d', counter);
  console.warn('warn line');
  process.stderr.write('no newline yet');
  return { counter, name: event.name, text: 'h\u00e9llo \u20ac',
           foo: process.env.FOO, baz: process.env.BAZ };
};

exports.echo = (event) => event;

exports.callback_later = (event, context, callback) => {
  setTimeout(() => callback(null, { via: 'callback', n: event.n }), 20);
};

exports.callback_twice = (event, context, callback) => {
  callback(null, 'first');
  callback(null, 'second');
  throw new Error('thrown after calling back');
};

exports.callback_returns_timer = (event, context, callback) =>
  setTimeout(() => callback(null, 'from the timer'), 10);

exports.sync_return = (event, context) => ({ sync: true, n: event.n });

exports.sync_undefined = (event) => {
  console.log('nothing to return');
};

exports.undefined_after_timer = (event) => {
  setTimeout(() => console.log('timer fired'), 30);
};

exports.async_undefined = async () => {};

exports.throws = (event) => {
  console.log('about to fail');
  throw new TypeError('boom ' + event.n);
};

exports.rejects = async (event) => {
  await new Promise((resolve) => setTimeout(resolve, 5));
  throw new RangeError('async boom');
};

exports.rejects_non_error = async () => {
  throw { code: 7 };
};

exports.callback_error = (event, context, callback) => {
  setImmediate(() => callback(new Error('cb boom')));
};

exports.callback_string_error = (event, context, callback) => callback('plain failure');

exports.uncaught = (event, context, callback) => {
  setTimeout(() => { throw new Error('async uncaught'); }, 5);
};

exports.unhandled = async () => {
  Promise.reject(new Error('unhandled one'));
  await new Promise((resolve) => setTimeout(resolve, 100));
  return 'late';
};

exports.late_throw = () => {
  setTimeout(() => { throw new Error('after the answer'); }, 10);
  return 'answered';
};

exports.remaining = async (event, context) => {
  const a = context.getRemainingTimeInMillis();
  await new Promise((resolve) => setTimeout(resolve, 60));
  const b = context.getRemainingTimeInMillis();
  return { a, b, limit: context.time_limit_in_ms, waits: context.callbackWaitsForEmptyEventLoop };
};

exports.exits = (event) => {
  console.log('bye');
  process.stdout.write('partial');
  process.exit(event.code);
};

exports.chatty = () => {
  process.stdout.write('a');
  process.stdout.write('b\nc');
  process.stdout.write('d\ne\nf');
  console.log('g');
  const bytes = Buffer.from('\u00e9\n');
  process.stdout.write(bytes.subarray(0, 1));
  process.stdout.write(bytes.subarray(1), () => {});
  console.error('err %s %j', 'x', { k: 1 });
  return null;
};

exports.bad_return = () => ({ big: 10n });

exports.context_echo = (event, context) => ({
  request_id: context.request_id, keys: Object.keys(context).sort(),
});

exports.not_a_function = 42;
'''


def context_for(request_id='req-1', environ='', time_limit=3000):
    return {
        'memory_limit_in_mb': 128,
        'time_limit_in_ms': time_limit,
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


def libuv_version():
    out = subprocess.run([NODE, '-p', 'process.versions.uv'], stdout=subprocess.PIPE,
                         check=True, timeout=TIMEOUT).stdout.decode().strip()
    return tuple(int(x) for x in out.split('.')[:2])


class Instance(object):
    """One bootstrap process plus the host end of its socket.

    abstract=False: a socket file in a temporary directory. abstract=True: '@name' in
    the abstract namespace, like fnlb; libuv before 1.48 (Node <= 20) connects with
    the name padded with NULs to the whole sun_path, so the listener binds that.
    """

    def __init__(self, code_dir, handler, abstract=False, pad_abstract=False):
        self.sock_dir = tempfile.mkdtemp(prefix='fnlb-sock-')
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if abstract:
            name = 'fnlb-test-' + uuid.uuid4().hex[:16]
            address = '\0' + name
            if pad_abstract:
                address = address.ljust(108, '\0')
            self.listener.bind(address)
            socket_env = '@' + name
        else:
            socket_env = os.path.join(self.sock_dir, 'rt.sock')
            self.listener.bind(socket_env)
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT)
        env = {
            'FNLB_RUNTIME_SOCKET': socket_env,
            '_HANDLER': handler,
            'USER_CODE_ROOT': code_dir,
            'SCF_RUNTIME': 'Nodejs16.13',
            'SCF_FUNCTIONNAME': 'fn',
            'SCF_FUNCTIONVERSION': '$LATEST',
            'SCF_NAMESPACE': 'default',
            'TENCENTCLOUD_REGION': 'ap-guangzhou',
            'TENCENTCLOUD_APPID': '1250000000',
            'TENCENTCLOUD_UIN': '100000000001',
            'TENCENTCLOUD_RUNENV': 'SCF',
            'TENCENTCLOUD_TZ': 'UTC',
            'PATH': '/usr/local/bin:/usr/bin:/bin',
            'HOME': code_dir,
            'LANG': 'C.UTF-8',
        }
        self.proc = subprocess.Popen(
            [NODE, BOOTSTRAP], cwd=code_dir, env=env,
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
        body = json.dumps({'event': event, 'context': context or context_for()}).encode()
        self.send(INVOKE, body)
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
        self.stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        shutil.rmtree(self.sock_dir, ignore_errors=True)


class BootstrapTest(unittest.TestCase):

    def setUp(self):
        self.code_dir = tempfile.mkdtemp(prefix='fnlb-code-')
        self.write('index.js', INDEX_JS)
        self.instances = []

    def tearDown(self):
        for inst in self.instances:
            inst.close()
        shutil.rmtree(self.code_dir, ignore_errors=True)

    def write(self, name, text):
        with open(os.path.join(self.code_dir, name), 'w') as f:
            f.write(textwrap.dedent(text))

    def start(self, handler, **kwargs):
        inst = Instance(self.code_dir, handler, **kwargs)
        self.instances.append(inst)
        return inst

    def start_ready(self, handler, **kwargs):
        inst = self.start(handler, **kwargs)
        logs, kind, payload = inst.read_until((READY, INIT_ERROR))
        self.assertEqual(kind, READY, payload)
        self.assertEqual(payload, b'')
        return inst, logs

    def assert_init_error(self, handler):
        inst = self.start(handler)
        logs, kind, payload = inst.read_until((READY, INIT_ERROR))
        self.assertEqual(kind, INIT_ERROR, payload)
        err = json.loads(payload)
        self.assertEqual(err['statusCode'], 437)
        self.assertEqual(err['errorCode'], -1)
        for key in ('errorMessage', 'errorType', 'stackTrace'):
            self.assertIsInstance(err[key], str)
        self.assertIsNone(inst.read_frame())    # then it exits
        self.assertEqual(inst.wait(), 0)
        return err, logs

    def assert_log_line(self, line, request_id, message):
        self.assertRegex(line, '^%s\t%s\t%s\n$' % (ISO, re.escape(request_id), re.escape(message)))

    def assert_result(self, inst, event, expected_json_text, context=None):
        logs, kind, payload = inst.invoke(event, context)
        self.assertEqual(kind, RESULT, payload)
        self.assertEqual(payload[8:].decode('utf-8'), expected_json_text)
        return logs

    def assert_error(self, inst, event, error_type, message):
        logs, kind, payload = inst.invoke(event)
        self.assertEqual(kind, ERROR, payload)
        err = json.loads(payload)
        self.assertEqual(err['statusCode'], 430)
        self.assertEqual(err['errorCode'], -1)
        self.assertEqual(err['errorType'], error_type)
        self.assertEqual(err['errorMessage'], message)
        self.assertIsInstance(err['stackTrace'], str)
        self.assertIsInstance(err['memUsage'], int)
        self.assertGreater(err['memUsage'], 0)
        return err, logs

    # ------------------------------------------------------------------ tests

    def test_ready_result_logs_and_warm_reuse(self):
        inst, logs = self.start_ready('index.main_handler')
        self.assertEqual(len(logs), 1, logs)                 # import-time output, before READY
        self.assert_log_line(logs[0], '', 'imported index')

        for n in (1, 2, 3):
            ctx = context_for('req-%d' % n, environ='FOO=bar;;BAZ=a=b;')
            logs, kind, payload = inst.invoke({'name': 'x'}, ctx)
            self.assertEqual(kind, RESULT, payload)
            rss = struct.unpack('>Q', payload[:8])[0]
            self.assertGreater(rss, 1024 * 1024)
            self.assertLess(rss, 1024 * 1024 * 1024)
            self.assertEqual(
                payload[8:].decode('utf-8'),
                '{"counter":%d,"name":"x","text":"h\u00e9llo \u20ac","foo":"bar","baz":"a=b"}' % n)
            self.assertEqual(len(logs), 4, logs)
            rid = 'req-%d' % n
            self.assert_log_line(logs[0], rid, 'hello x')
            self.assert_log_line(logs[1], rid, 'info line %d' % n)
            self.assert_log_line(logs[2], rid, 'warn line')
            self.assertEqual(logs[3], 'no newline yet\n')   # partial line flushed before RESULT

        inst.conn.close()                                    # EOF -> clean exit
        self.assertEqual(inst.wait(), 0)

    def test_abstract_socket(self):
        uv = libuv_version()
        if uv < (1, 46):
            self.skipTest('libuv %d.%d cannot connect to abstract sockets' % uv)
        inst, _ = self.start_ready('index.echo', abstract=True, pad_abstract=uv < (1, 48))
        self.assert_result(inst, {'k': 1}, '{"k":1}')

    def test_callback_handler(self):
        inst, _ = self.start_ready('index.callback_later')
        self.assert_result(inst, {'n': 5}, '{"via":"callback","n":5}')

    def test_first_result_wins(self):
        inst, _ = self.start_ready('index.callback_twice')
        logs, kind, payload = inst.invoke({})
        self.assertEqual(kind, RESULT, payload)
        self.assertEqual(payload[8:], b'"first"')
        self.assertEqual(logs, [])
        # The exception thrown after calling back is logged with the next invocation.
        logs = self.assert_result(inst, {}, '"first"')
        self.assertEqual(len(logs), 1, logs)
        self.assertIn('Uncaught exception: Error: thrown after calling back', logs[0])

    def test_callback_handler_returning_a_value(self):
        # A concise arrow with a callback parameter returns a Timeout: the callback decides.
        inst, _ = self.start_ready('index.callback_returns_timer')
        self.assert_result(inst, {}, '"from the timer"')

    def test_sync_return(self):
        inst, _ = self.start_ready('index.sync_return')
        for n in (1, 2):
            self.assert_result(inst, {'n': n}, '{"sync":true,"n":%d}' % n)

    def test_undefined_gives_null(self):
        inst, _ = self.start_ready('index.sync_undefined')
        logs = self.assert_result(inst, {}, 'null')
        self.assertEqual(len(logs), 1)
        self.assert_log_line(logs[0], 'req-1', 'nothing to return')

        inst, _ = self.start_ready('index.async_undefined')
        self.assert_result(inst, {}, 'null')

    def test_undefined_waits_for_empty_event_loop(self):
        inst, _ = self.start_ready('index.undefined_after_timer')
        for _ in range(2):
            logs = self.assert_result(inst, {}, 'null')
            self.assertEqual(len(logs), 1, logs)
            self.assert_log_line(logs[0], 'req-1', 'timer fired')

    def test_thrown_error(self):
        inst, _ = self.start_ready('index.throws')
        for n in (1, 2):
            err, logs = self.assert_error(inst, {'n': n}, 'TypeError', 'boom %d' % n)
            self.assertEqual(len(logs), 1)
            self.assert_log_line(logs[0], 'req-1', 'about to fail')
            self.assertTrue(err['stackTrace'].startswith('TypeError: boom %d\n' % n), err['stackTrace'])
            self.assertIn('index.js:', err['stackTrace'])
            self.assertNotIn('bootstrap.js', err['stackTrace'])

    def test_rejected_promise(self):
        inst, _ = self.start_ready('index.rejects')
        err, _ = self.assert_error(inst, {}, 'RangeError', 'async boom')
        self.assertIn('RangeError: async boom', err['stackTrace'])
        self.assertIn('index.js:', err['stackTrace'])

    def test_rejected_with_non_error(self):
        inst, _ = self.start_ready('index.rejects_non_error')
        err, _ = self.assert_error(inst, {}, 'Object', '{"code":7}')
        self.assertEqual(err['stackTrace'], '')

    def test_callback_error(self):
        inst, _ = self.start_ready('index.callback_error')
        err, _ = self.assert_error(inst, {}, 'Error', 'cb boom')
        self.assertIn('Error: cb boom', err['stackTrace'])
        self.assertIn('index.js:', err['stackTrace'])

    def test_callback_string_error(self):
        inst, _ = self.start_ready('index.callback_string_error')
        self.assert_error(inst, {}, 'string', 'plain failure')

    def test_uncaught_exception_and_unhandled_rejection(self):
        inst, _ = self.start_ready('index.uncaught')
        for _ in range(2):                          # the instance stays usable
            self.assert_error(inst, {}, 'Error', 'async uncaught')

        inst, _ = self.start_ready('index.unhandled')
        self.assert_error(inst, {}, 'Error', 'unhandled one')

    def test_exception_between_invocations_is_logged(self):
        inst, _ = self.start_ready('index.late_throw')
        self.assert_result(inst, {}, '"answered"', context_for('req-a'))
        kind, payload = inst.read_frame()       # sent between invocations (fnlb reads it with the next)
        self.assertEqual(kind, LOG)
        self.assertRegex(payload.decode(), '^%s\treq-a\tUncaught exception: Error: after the answer\n' % ISO)
        logs = self.assert_result(inst, {}, '"answered"', context_for('req-b'))
        self.assertEqual(logs, [])

    def test_non_serialisable_return(self):
        inst, _ = self.start_ready('index.bad_return')
        err, _ = self.assert_error(inst, {}, 'TypeError', 'Do not know how to serialize a BigInt')

    def test_partial_writes(self):
        inst, _ = self.start_ready('index.chatty')
        logs = self.assert_result(inst, {}, 'null')
        self.assertEqual(len(logs), 5, logs)
        self.assertEqual(logs[0], 'ab\n')
        self.assertEqual(logs[1], 'cd\ne\n')
        self.assertRegex(logs[2], '^f%s\treq-1\tg\n$' % ISO)
        self.assertEqual(logs[3], '\u00e9\n')
        self.assert_log_line(logs[4], 'req-1', 'err x {"k":1}')

    def test_remaining_time(self):
        inst, _ = self.start_ready('index.remaining')
        logs, kind, payload = inst.invoke({}, context_for(time_limit=2000))
        self.assertEqual(kind, RESULT, payload)
        got = json.loads(payload[8:].decode())
        self.assertEqual(got['limit'], 2000)
        self.assertIs(got['waits'], True)
        self.assertLessEqual(got['a'], 2000)
        self.assertGreater(got['a'], 1500)
        self.assertLessEqual(got['b'], got['a'] - 50)
        self.assertGreater(got['b'], 0)

    def test_context_is_passed(self):
        inst, _ = self.start_ready('index.context_echo')
        _, kind, payload = inst.invoke({}, context_for('abc-123'))
        self.assertEqual(kind, RESULT)
        got = json.loads(payload[8:].decode())
        self.assertEqual(got['request_id'], 'abc-123')
        self.assertEqual(got['keys'], sorted(list(context_for()) + [
            'callbackWaitsForEmptyEventLoop', 'getRemainingTimeInMillis']))

    def test_large_event_round_trip(self):
        inst, _ = self.start_ready('index.echo')
        event = {'blob': 'x' * (3 * 1024 * 1024), 'u': '\u4e2d\u6587'}
        for _ in range(2):
            _, kind, payload = inst.invoke(event)
            self.assertEqual(kind, RESULT)
            self.assertEqual(json.loads(payload[8:].decode('utf-8')), event)

    def test_process_exit_ends_process(self):
        inst, _ = self.start_ready('index.exits')
        logs, kind, _ = inst.invoke({'code': 3})
        self.assertIsNone(kind)                 # EOF: fnlb answers 439
        self.assertEqual(len(logs), 2, logs)
        self.assert_log_line(logs[0], 'req-1', 'bye')
        self.assertEqual(logs[1], 'partial\n')
        self.assertEqual(inst.wait(), 3)

    def test_protocol_errors_exit_2(self):
        inst, _ = self.start_ready('index.echo')
        inst.send(99, b'{}')
        self.assertIsNone(inst.read_frame())
        self.assertEqual(inst.wait(), 2)

        inst, _ = self.start_ready('index.echo')
        inst.conn.sendall(HEADER.pack(16 * 1024 * 1024 + 2, INVOKE))
        self.assertIsNone(inst.read_frame())
        self.assertEqual(inst.wait(), 2)

    def test_esm_module(self):
        self.write('esm.mjs', '''
            console.log('esm loaded');
            export const main_handler = async (event) => ({ esm: true, n: event.n });
        ''')
        inst, logs = self.start_ready('esm.main_handler')
        self.assertEqual(len(logs), 1)
        self.assert_log_line(logs[0], '', 'esm loaded')
        self.assert_result(inst, {'n': 1}, '{"esm":true,"n":1}')

    def test_package_type_module(self):
        # index.js is ESM here: require() fails with ERR_REQUIRE_ESM, import() loads it.
        self.write('package.json', '{"type": "module"}')
        self.write('modern.js', '''
            import os from 'os';
            export function main_handler(event, context, callback) {
              callback(null, { platform: os.platform(), n: event.n });
            }
        ''')
        inst, _ = self.start_ready('modern.main_handler')
        self.assert_result(inst, {'n': 2}, '{"platform":"linux","n":2}')

    def test_node_path_and_legacy_context(self):
        # NODE_PATH holds the code dir, as on SCF: 'helpers/greet' resolves from it.
        os.mkdir(os.path.join(self.code_dir, 'helpers'))
        self.write('helpers/greet.js', '''
            module.exports = (name) => 'hi ' + name;
        ''')
        self.write('legacy.js', '''
            const greet = require('helpers/greet');
            exports.main_handler = function (event, context) {
              console.trace('where');
              setTimeout(() => context.succeed(greet(event.name)), 5);
            };
        ''')
        inst, _ = self.start_ready('legacy.main_handler')
        logs = self.assert_result(inst, {'name': 'bob'}, '"hi bob"')
        self.assertEqual(len(logs), 1, logs)
        self.assertRegex(logs[0], '^%s\treq-1\tTrace: where\n    at exports.main_handler \\(/' % ISO)
        self.assertNotIn('bootstrap.js', logs[0])

    def test_missing_module(self):
        err, _ = self.assert_init_error('nosuchmodule.main_handler')
        self.assertEqual(err['errorType'], 'Error')
        self.assertIn('Cannot find module', err['errorMessage'])
        self.assertIn('nosuchmodule', err['errorMessage'])

    def test_missing_function(self):
        err, logs = self.assert_init_error('index.nosuchfunction')
        self.assertEqual(err['errorType'], 'HandlerNotFound')
        self.assertEqual(err['errorMessage'], 'index.nosuchfunction is undefined or not exported')
        self.assertEqual(len(logs), 1)
        self.assert_log_line(logs[0], '', 'imported index')

    def test_not_a_function(self):
        err, _ = self.assert_init_error('index.not_a_function')
        self.assertEqual(err['errorType'], 'HandlerNotFound')
        self.assertEqual(err['errorMessage'], 'index.not_a_function is not a function')

    def test_syntax_error(self):
        self.write('broken.js', '''
            var x = 1;
            function main_handler(event, context)
              return 1;
            }
        ''')
        err, _ = self.assert_init_error('broken.main_handler')
        self.assertEqual(err['errorType'], 'SyntaxError')
        self.assertIn('Unexpected token', err['errorMessage'])
        self.assertIn('(broken.js:4)', err['errorMessage'])
        self.assertIn('broken.js:4', err['stackTrace'])
        self.assertIn('  return 1;', err['stackTrace'])
        self.assertIn('SyntaxError: Unexpected token', err['stackTrace'])
        self.assertNotIn('bootstrap.js', err['stackTrace'])

    def test_import_time_exception(self):
        self.write('explodes.js', '''
            throw new Error("cannot start");
        ''')
        err, _ = self.assert_init_error('explodes.main_handler')
        self.assertEqual(err['errorType'], 'Error')
        self.assertEqual(err['errorMessage'], 'cannot start')
        self.assertIn('explodes.js:2', err['stackTrace'])

    def test_bad_handler_spec(self):
        err, _ = self.assert_init_error('nodot')
        self.assertEqual(err['errorType'], 'HandlerNotFound')

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


if __name__ == '__main__':
    unittest.main(verbosity=2)
