'use strict';
/*
 * fnlb Node.js runtime bootstrap: runs one SCF function instance.
 *
 * fnlb starts `node bootstrap.js` with the working directory set to the function's
 * code directory and these environment variables (among the SCF ones):
 *
 *     FNLB_RUNTIME_SOCKET  Unix stream socket to connect to (once); '@name' is in the abstract namespace
 *     _HANDLER             "file.function", e.g. "index.main_handler"
 *     USER_CODE_ROOT       the code directory (defaults to the working directory)
 *
 * Every frame, in both directions, is
 *
 *     length:u32 big-endian (counts kind + payload) | kind:u8 | payload
 *
 * with length <= 16 MiB + 1 (see docs/function-protocol.md).
 *
 *     fnlb -> instance   1  INVOKE      JSON {"context": {...}, "event": ...}
 *     instance -> fnlb  10  READY       empty; the handler was loaded and found
 *                       11  INIT_ERROR  JSON {statusCode 437, ...}; then we exit
 *                       12  LOG         UTF-8 text, whole lines, ending in "\n"
 *                       13  RESULT      u64 BE peak RSS in bytes + return value as JSON
 *                       14  ERROR       JSON {statusCode 430, ..., memUsage}
 *
 * Node semantics (contract 2.3), as implemented here:
 *
 *  * The handler is called as handler(event, context, callback). The invocation ends
 *    with the first of: callback(err, result); the settling of a returned promise
 *    (or thenable); a synchronous throw; an uncaught exception or unhandled
 *    rejection while it runs. Later outcomes are ignored.
 *  * A handler that returns a non-promise value other than undefined and declares
 *    fewer than three parameters (so it cannot be using the callback) answers with
 *    that value at once.
 *  * Otherwise (undefined returned, or a value returned by a handler that declares a
 *    callback parameter, or a promise that never settles) the bootstrap waits for the
 *    callback, and if the event loop becomes empty first ('beforeExit', the socket to
 *    fnlb being unref'd while we wait) the result is the returned value, or null.
 *    This is "if neither callback nor return is used, the platform returns null",
 *    without cutting off callback handlers that call back from a timer or an I/O
 *    completion.
 *  * The answer goes out as soon as the result is known, as on Tencent's Node >= 10.15;
 *    work still pending keeps running in the warm instance (its logs reach fnlb with
 *    the next invocation). context.callbackWaitsForEmptyEventLoop exists (default
 *    true) for compatibility only: fnlb answers immediately whatever its value.
 *  * console.log/info/warn/error/debug (and trace, which calls error) write
 *    "<ISO-8601 UTC time>\t<request id>\t<util.format(...)>\n"; process.stdout.write
 *    and process.stderr.write are captured raw. Both go through one line buffer, so
 *    only complete lines are sent; a partial line is completed with "\n" and sent
 *    before RESULT/ERROR. The request id is '' while the module loads and stays the
 *    last invocation's id between invocations.
 *  * An uncaught exception / unhandled rejection with no invocation running is
 *    written to the log and the instance carries on.
 *  * process.exit() in user code ends the process (fnlb: 439); the partial log line
 *    is flushed from an 'exit' listener first.
 *  * NODE_PATH, unless set, becomes "<code dir>:<code dir>/node_modules[:/opt:/opt/node_modules]"
 *    like SCF's, so that non-relative requires of the code's own files resolve.
 *  * The handler file is loaded with require(); an ECMAScript module (ERR_REQUIRE_ESM:
 *    "type": "module") is loaded with import(), as is <file>.mjs when <file>.js does
 *    not exist (<file>.cjs is required).
 *
 * '@name' sockets: libuv before 1.48 (Node 16 to 20) cannot connect to an abstract
 * socket by its exact name (1.46/1.47 pad the name with NULs to the whole sun_path,
 * older versions cut it at the NUL), so fnlb should give Node instances a socket path
 * on disk; '@name' works with Node 22 and later.
 */

const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('util');
const Module = require('module');
const { StringDecoder } = require('string_decoder');
const { performance } = require('perf_hooks');

// Frame kinds.
const INVOKE = 1;
const START = 3;
const READY = 10;
const INIT_ERROR = 11;
const LOG = 12;
const RESULT = 13;
const ERROR = 14;

const MAX_PAYLOAD = 16 * 1024 * 1024;     // a frame's length is at most this + 1
const MAX_RESULT_JSON = MAX_PAYLOAD - 8;  // RESULT starts with the 8-byte RSS
const INIT_STATUS = 437;
const INVOKE_STATUS = 430;
const TWO_32 = 4294967296;

const EMPTY = Buffer.alloc(0);
const format = util.format;
const isNativeError = util.types.isNativeError;
const resourceUsage = process.resourceUsage;
const env = process.env;

let socket = null;        // the connection to fnlb
let connected = false;    // false once it ended or failed: nothing more is sent
let sink = null;          // the log line buffer
let handler = null;       // the user's function
let requestId = '';       // of the running (or last) invocation, for the log format
let current = null;       // the running Invocation, or null
let unrefed = false;      // the socket is unref'd while we wait for the event loop to empty
const queued = [];        // INVOKE payloads that arrived while one was running (fnlb never does that)
let expected = INVOKE;    // the frame kind fnlb may send next (START first, for a spare)
let reader = null;        // reassembles fnlb's frames, once they are read

// --------------------------------------------------------------------------- socket

function send(buf) {
  if (connected) socket.write(buf);
}

function frame(kind, payload) {
  const header = Buffer.allocUnsafe(5);
  header.writeUInt32BE(payload.length + 1, 0);
  header[4] = kind;
  return payload.length ? Buffer.concat([header, payload], payload.length + 5) : header;
}

/** Reassembles frames from socket chunks; every byte is copied at most once. */
class FrameReader {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.chunks = [];
    this.buffered = 0;
    this.need = 5;        // bytes of the header, then of the payload
    this.kind = -1;       // -1 while reading a header
  }

  push(chunk) {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= this.need) {
      const buf = this.take(this.need);
      if (this.kind < 0) {
        const length = buf.readUInt32BE(0);
        const kind = buf[4];
        if (length < 1 || length > MAX_PAYLOAD + 1) {
          die(`protocol error: frame length ${length} out of range`, 2);
          return;
        }
        if (kind !== expected) {
          die(`protocol error: unexpected frame kind ${kind}`, 2);
          return;
        }
        if (length === 1) {
          this.onFrame(kind, EMPTY);
        } else {
          this.kind = kind;
          this.need = length - 1;
        }
      } else {
        const kind = this.kind;
        this.kind = -1;
        this.need = 5;
        this.onFrame(kind, buf);
      }
    }
  }

  take(n) {
    const chunks = this.chunks;
    this.buffered -= n;
    const first = chunks[0];
    if (first.length === n) {
      chunks.shift();
      return first;
    }
    if (first.length > n) {
      chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let offset = 0;
    while (offset < n) {
      const chunk = chunks[0];
      const m = Math.min(chunk.length, n - offset);
      chunk.copy(out, offset, 0, m);
      offset += m;
      if (m === chunk.length) chunks.shift();
      else chunks[0] = chunk.subarray(m);
    }
    return out;
  }
}

// --------------------------------------------------------------------------- logs

function sendLog(text) {
  const n = Buffer.byteLength(text, 'utf8');
  if (n <= MAX_PAYLOAD) {
    const buf = Buffer.allocUnsafe(n + 5);
    buf.writeUInt32BE(n + 1, 0);
    buf[4] = LOG;
    buf.write(text, 5, 'utf8');
    send(buf);
    return;
  }
  // A giant write: split it into frames that fit (3 bytes per UTF-16 unit at most).
  const step = Math.floor(MAX_PAYLOAD / 3);
  for (let start = 0; start < text.length;) {
    let end = Math.min(start + step, text.length);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end -= 1;   // keep surrogate pairs whole
    send(frame(LOG, Buffer.from(text.slice(start, end), 'utf8')));
    start = end;
  }
}

/** Collects everything written to the console and stdout/stderr; sends complete lines. */
class LogSink {
  constructor() {
    this.pending = '';    // text written after the last newline
  }

  write(text) {
    const nl = text.lastIndexOf('\n');
    if (nl < 0) {
      this.pending += text;
      return;
    }
    let lines = nl === text.length - 1 ? text : text.slice(0, nl + 1);
    if (this.pending) lines = this.pending + lines;
    this.pending = nl === text.length - 1 ? '' : text.slice(nl + 1);
    sendLog(lines);
  }

  /** Sends a pending partial line, completed with a newline. */
  flush() {
    if (this.pending) {
      const text = this.pending + '\n';
      this.pending = '';
      sendLog(text);
    }
  }
}

function logLine(message) {
  return `${new Date().toISOString()}\t${requestId}\t${message}\n`;
}

function consoleMethod() {
  return function log() {
    sink.write(logLine(format.apply(null, arguments)));
  };
}

function captureStream(stream) {
  const decoder = new StringDecoder('utf8');    // for bytes; a split character waits for its rest
  stream.write = function write(chunk, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    let text;
    if (typeof chunk === 'string') {
      text = !encoding || encoding === 'utf8' || encoding === 'utf-8'
        ? chunk : decoder.write(Buffer.from(chunk, encoding));
    } else if (chunk instanceof Uint8Array) {
      text = decoder.write(Buffer.isBuffer(chunk)
        ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    } else {
      throw new TypeError(
        'The "chunk" argument must be of type string or an instance of Buffer or Uint8Array');
    }
    if (text) sink.write(text);
    if (typeof cb === 'function') process.nextTick(cb);
    return true;
  };
}

function installLogCapture() {
  sink = new LogSink();
  for (const name of ['log', 'info', 'warn', 'error', 'debug']) console[name] = consoleMethod();
  console.trace = function trace() {
    const err = { name: 'Trace', message: format.apply(null, arguments) };
    Error.captureStackTrace(err, trace);
    sink.write(logLine(cleanStack(err.stack)));
  };
  captureStream(process.stdout);
  captureStream(process.stderr);
  // process.exit() from user code: send the partial line (the write usually completes at once).
  process.on('exit', () => sink.flush());
  process.on('uncaughtException', (err) => failCurrent(err, 'Uncaught exception'));
  process.on('unhandledRejection', (reason) => failCurrent(reason, 'Unhandled promise rejection'));
  process.on('beforeExit', () => {
    // The event loop is empty while an invocation waits: nothing can call back any more.
    if (current !== null) finish(current, false, current.fallback);
  });
}

function failCurrent(err, what) {
  if (current !== null) {
    finish(current, true, err);
  } else {
    sink.write(logLine(`${what}: ${describe(err)}`));
  }
}

function describe(value) {
  try {
    if (isNativeError(value) && typeof value.stack === 'string') return cleanStack(value.stack);
    return util.inspect(value);
  } catch (e) {
    return '<uninspectable value>';
  }
}

// --------------------------------------------------------------------------- errors

/**
 * `text` (a stack or a message) without the bootstrap: its frames are the callers of
 * the user's code (the bootstrap and Node's stream dispatch under it), so the stack
 * is cut at the first of them; "- <bootstrap>" lines of a "Require stack:" go too.
 */
function cleanStack(text) {
  if (text.indexOf(__filename) < 0) return text;
  const lines = text.split('\n');
  const out = [];
  for (const line of lines) {
    if (line.indexOf(__filename) >= 0) {
      if (line.startsWith('    at ')) break;
      if (line === `- ${__filename}`) continue;
    }
    out.push(line);
  }
  return out.join('\n');
}

function describeError(err) {
  if (isNativeError(err) || err instanceof Error) {
    let message;
    let type;
    let stack;
    try {
      message = cleanStack(String(err.message));
      type = String(err.name || 'Error');
      stack = cleanStack(String(err.stack || `${type}: ${message}`));
    } catch (e) {
      message = '<unprintable error>';
      type = 'Error';
      stack = '';
    }
    return { message, type, stack };
  }
  // callback('text'), throw 42, reject({code: 1}), ...
  let message;
  if (typeof err === 'string') {
    message = err;
  } else {
    try {
      message = JSON.stringify(err);
    } catch (e) {
      message = undefined;
    }
    if (typeof message !== 'string') {
      try {
        message = String(err);
      } catch (e) {
        message = describe(err);
      }
    }
  }
  let type;
  if (err === null) type = 'null';
  else if (typeof err === 'object') type = (err.constructor && err.constructor.name) || 'Object';
  else type = typeof err;
  return { message, type, stack: '' };
}

function errorPayload(status, err, memUsage) {
  const { message, type, stack } = describeError(err);
  const error = {
    statusCode: status,
    errorCode: -1,
    errorMessage: message,
    errorType: type,
    stackTrace: stack,
  };
  if (memUsage !== undefined) error.memUsage = memUsage;
  return Buffer.from(JSON.stringify(error), 'utf8');
}

function namedError(name, message) {
  const err = new Error(message);
  err.name = name;
  err.stack = `${name}: ${message}`;
  return err;
}

function peakRss() {
  return resourceUsage().maxRSS * 1024;   // maxRSS is in KiB
}

function die(message, status) {
  if (sink !== null) sink.flush();
  try {
    fs.writeSync(2, `fnlb bootstrap: ${message}\n`);
  } catch (e) {
    // stderr is gone too
  }
  process.exit(status);
}

// --------------------------------------------------------------------------- start

/** NODE_PATH as on SCF (code dir, its node_modules, then /opt for layers) unless already set. */
function setupModulePaths(codeDir) {
  if (env.NODE_PATH) {
    // A spare took its NODE_PATH with its function, after Node.js read the one it started with.
    if (typeof Module._initPaths === 'function') Module._initPaths();
    return;
  }
  const dirs = [codeDir, path.join(codeDir, 'node_modules')];
  if (isDir('/opt')) dirs.push('/opt', '/opt/node_modules');
  env.NODE_PATH = dirs.join(path.delimiter);
  if (typeof Module._initPaths === 'function') Module._initPaths();
}

function isDir(p) {
  try {
    return fs.statSync(p).isDirectory();
  } catch (e) {
    return false;
  }
}

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch (e) {
    return false;
  }
}

/** The handler function, or a promise of it when the module is ECMAScript. */
function loadHandler(spec, codeDir) {
  const dot = spec.lastIndexOf('.');
  if (dot <= 0 || dot === spec.length - 1) {
    throw namedError('HandlerNotFound', `invalid handler "${spec}": expected "file.function"`);
  }
  const file = spec.slice(0, dot);
  const name = spec.slice(dot + 1);
  const base = path.resolve(codeDir, file);
  const pick = (mod) => findFunction(mod, file, name);
  let mod;
  try {
    mod = require(base);
  } catch (err) {
    const code = err && err.code;
    if (code === 'ERR_REQUIRE_ESM' || code === 'ERR_REQUIRE_ASYNC_MODULE') {
      return importModule(require.resolve(base)).then(pick);
    }
    // `require` does not try .mjs/.cjs; only when the handler file itself is missing.
    if (code === 'MODULE_NOT_FOUND' && String(err.message).startsWith(`Cannot find module '${base}'`)) {
      if (isFile(`${base}.mjs`)) return importModule(`${base}.mjs`).then(pick);
      if (isFile(`${base}.cjs`)) return pick(require(`${base}.cjs`));
    }
    throw err;
  }
  return pick(mod);
}

function importModule(file) {
  return import(require('url').pathToFileURL(file).href);
}

function findFunction(mod, file, name) {
  let fn = mod == null ? undefined : mod[name];
  if (fn === undefined && mod != null && mod.default != null && typeof mod.default === 'object') {
    fn = mod.default[name];     // an ES module namespace wrapping module.exports
  }
  if (fn === undefined) throw namedError('HandlerNotFound', `${file}.${name} is undefined or not exported`);
  if (typeof fn !== 'function') throw namedError('HandlerNotFound', `${file}.${name} is not a function`);
  return fn;
}

function initFailed(err, codeDir) {
  if (err && err.name === 'SyntaxError' && typeof err.stack === 'string') {
    // Node keeps the location only in the stack ("/code/index.js:3\n<source>\n  ^^^\n\nSyntaxError: ...").
    const where = /^(?:file:\/\/)?(\/[^\n]*?):(\d+)\n/.exec(err.stack);
    if (where) {
      const file = path.relative(codeDir, where[1]) || where[1];
      try {
        err.message = `${err.message} (${file}:${where[2]})`;
      } catch (e) {
        // a frozen error keeps its message
      }
    }
  }
  const payload = errorPayload(INIT_STATUS, err);
  sink.flush();
  if (!connected) process.exit(0);
  socket.write(frame(INIT_ERROR, payload), () => process.exit(0));
}

function ready(fn) {
  handler = fn;
  send(frame(READY, EMPTY));
  readFrames();
}

function readFrames() {
  if (reader !== null) return;
  reader = new FrameReader(onFrame);
  socket.on('data', (chunk) => reader.push(chunk));
}

function startFunction(spec, codeDir) {
  installLogCapture();
  setupModulePaths(codeDir);
  let loaded;
  try {
    loaded = loadHandler(spec, codeDir);
  } catch (err) {
    initFailed(err, codeDir);
    return;
  }
  if (typeof loaded === 'function') ready(loaded);
  else loaded.then(ready, (err) => initFailed(err, codeDir));
}

// --------------------------------------------------------------------------- invoke

/** Sets `K=V;K=V` pairs from the context into process.env, as SCF does. */
function applyEnviron(environ) {
  for (const item of String(environ).split(';')) {
    const eq = item.indexOf('=');
    if (eq > 0) env[item.slice(0, eq)] = item.slice(eq + 1);
  }
}

function sendError(err) {
  const payload = errorPayload(INVOKE_STATUS, err, peakRss());
  sink.flush();
  send(frame(ERROR, payload));
}

function sendResult(value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    sendError(err);
    return;
  }
  if (text === undefined) text = 'null';    // undefined, a function, a symbol
  const n = Buffer.byteLength(text, 'utf8');
  if (n > MAX_RESULT_JSON) {
    sendError(new RangeError(
      `return value is too large: ${n} bytes of JSON (at most ${MAX_RESULT_JSON})`));
    return;
  }
  const buf = Buffer.allocUnsafe(n + 13);
  const rss = peakRss();
  buf.writeUInt32BE(n + 9, 0);
  buf[4] = RESULT;
  buf.writeUInt32BE(Math.floor(rss / TWO_32), 5);
  buf.writeUInt32BE(rss >>> 0, 9);
  buf.write(text, 13, 'utf8');
  sink.flush();
  send(buf);
}

class Invocation {
  constructor() {
    this.done = false;
    this.fallback = undefined;    // the result if the event loop empties first
  }
}

/** Ends `inv` with its first outcome; later ones are ignored. */
function finish(inv, failed, value) {
  if (inv.done) return;
  inv.done = true;
  if (current === inv) current = null;
  if (unrefed) {
    unrefed = false;
    socket.ref();
  }
  if (failed) sendError(value);
  else sendResult(value);
  if (queued.length) setImmediate(runQueued);
}

function runQueued() {
  if (current === null && queued.length) invoke(queued.shift());
}

function onFrame(kind, payload) {
  if (kind === START) {
    expected = INVOKE;
    takeOn(payload);
    return;
  }
  // kind is INVOKE (checked by FrameReader)
  if (current !== null || queued.length) queued.push(payload);
  else invoke(payload);
}

function invoke(payload) {
  let event;
  let context;
  try {
    const request = JSON.parse(payload.toString('utf8'));
    event = request.event === undefined ? null : request.event;
    context = request.context;
    if (context === null || typeof context !== 'object') context = {};
    if (context.environ) applyEnviron(context.environ);
    requestId = context.request_id ? String(context.request_id) : '';
  } catch (err) {
    sendError(err);
    return;
  }

  const inv = new Invocation();
  current = inv;
  const started = performance.now();
  const limit = Number(context.time_limit_in_ms) || 0;
  const callback = (err, result) => {
    if (err === null || err === undefined) finish(inv, false, result);
    else finish(inv, true, err);
  };
  context.callbackWaitsForEmptyEventLoop = true;
  context.getRemainingTimeInMillis = () => Math.max(0, Math.floor(limit - (performance.now() - started)));
  // Legacy (Node 6.10 era) helpers, hidden from console.log(context) and JSON.
  Object.defineProperties(context, {
    done: { value: callback, writable: true, configurable: true },
    succeed: { value: (result) => callback(null, result), writable: true, configurable: true },
    fail: { value: (err) => callback(err === undefined ? null : err), writable: true, configurable: true },
  });

  let ret;
  try {
    ret = handler(event, context, callback);
  } catch (err) {
    if (inv.done) failCurrent(err, 'Uncaught exception');   // thrown after calling back
    else finish(inv, true, err);
    return;
  }
  if (inv.done) return;
  if (ret !== null && (typeof ret === 'object' || typeof ret === 'function') && typeof ret.then === 'function') {
    Promise.resolve(ret).then((value) => finish(inv, false, value), (err) => finish(inv, true, err));
  } else if (ret !== undefined && handler.length < 3) {
    finish(inv, false, ret);
    return;
  } else {
    inv.fallback = ret;
  }
  // Wait for the callback or the promise, or for the event loop to become empty (beforeExit).
  socket.unref();
  unrefed = true;
}

// --------------------------------------------------------------------------- main

function main() {
  // Removed so that user subprocesses do not see (or try) the socket.
  const socketPath = env.FNLB_RUNTIME_SOCKET || '';
  delete env.FNLB_RUNTIME_SOCKET;
  const spec = env._HANDLER || '';
  const codeDir = env.USER_CODE_ROOT || process.cwd();
  if (!socketPath) die('FNLB_RUNTIME_SOCKET is not set', 2);

  // A leading '@' names a socket in the abstract namespace (no file on disk).
  const address = socketPath[0] === '@' ? `\0${socketPath.slice(1)}` : socketPath;
  socket = net.connect({ path: address });
  socket.once('error', (err) => {
    let hint = '';
    if (socketPath[0] === '@') {
      hint = ` (Node ${process.version} with libuv ${process.versions.uv}: libuv before 1.48 cannot ` +
        'connect to an abstract socket by its exact name; use a socket path on disk)';
    }
    die(`cannot connect to ${socketPath}: ${err.message}${hint}`, 2);
  });
  socket.once('connect', () => {
    connected = true;
    socket.removeAllListeners('error');
    // fnlb is gone (end of file, or a failed write): nobody is left to report to.
    socket.on('error', () => {
      connected = false;
      process.exit(0);
    });
    socket.on('end', () => {
      if (sink !== null) sink.flush();
      connected = false;
      process.exit(0);
    });
    if (spare === null) startFunction(spec, codeDir);
    else readFrames();
  });
}

// --------------------------------------------------------------------------- spares

/*
 * A spare (FNLB_SPARE=1) is started ahead of time by a keeper (a child of the Python zygote, see
 * runtimes/python/bootstrap.py run_keeper and docs/function-protocol.md), with no function: its own mount
 * namespace, /tmp and /proc are made, no_new_privs is set and the system-call filter installed, but it runs as
 * root with the zygote's capabilities until it takes on a function. It connects, and waits for START
 * {"code", "env", "uid"}; then, before it loads a line of the function: its keeper (descriptor 3) binds the
 * function's package at USER_CODE_ROOT and covers every other one; it takes the package as working directory,
 * the function's environment (written over its environment block too, so that /proc/<pid>/environ shows it) and
 * the function's user (which leaves it no capability). What its processes write to descriptors 1 and 2 outside
 * the console comes back on descriptor 4 and goes to fnlb as LOG frames.
 */
const KEEPER_FD = 3;
const OUTPUT_FD = 4;

let spare = null;         // the spare's keeper link, until the spare takes on a function

function becomeSpare() {
  const keeper = new net.Socket({ fd: KEEPER_FD, readable: true, writable: true });
  // A spare whose keeper is gone can never take on a function: it ends, and fnlb starts another.
  keeper.on('end', () => {
    if (spare !== null) process.exit(0);
  });
  keeper.on('error', () => process.exit(0));
  keeper.unref();
  spare = keeper;
  expected = START;
  const output = new net.Socket({ fd: OUTPUT_FD, readable: true, writable: false });
  const decoder = new StringDecoder('utf8');
  output.on('data', (chunk) => {
    const text = decoder.write(chunk);
    if (text) sendLog(text);
  });
  output.on('error', () => {});
  output.unref();
}

function takeOn(payload) {
  let start;
  let functionEnv;
  let codeDir;
  try {
    start = JSON.parse(payload.toString('utf8'));
    functionEnv = new Map(start.env);
    codeDir = functionEnv.get('USER_CODE_ROOT') || '/var/user';
  } catch (err) {
    die(`cannot take on the function: ${err.message}`, 2);
    return;
  }
  const keeper = spare;
  let answer = '';
  keeper.setEncoding('utf8');
  keeper.on('data', (text) => {
    answer += text;
    if (!answer.endsWith('\n')) return;
    spare = null;
    keeper.destroy();
    if (answer !== 'ok\n') {
      die(`cannot take on the function: the keeper answered ${answer.trim()}`, 2);
      return;
    }
    try {
      process.chdir(codeDir);
      for (const key of Object.keys(env)) delete env[key];
      showEnvironment(functionEnv);
      for (const [key, value] of functionEnv) env[key] = value;
      if (start.uid !== null && start.uid !== undefined) {
        process.setgroups([]);
        process.setgid(start.uid);
        process.setuid(start.uid);
      }
    } catch (err) {
      die(`cannot take on the function: ${err.message}`, 2);
      return;
    }
    startFunction(env._HANDLER || '', codeDir);
  });
  keeper.ref();
  keeper.write(`${JSON.stringify({ code: start.code, code_dir: codeDir })}\n`);
}

/**
 * Writes the function's environment over the one the spare started with, in the process's environment block,
 * so that /proc/<pid>/environ (and ps) show the function's: the keeper gives the spare room for it
 * (FNLB_ENVIRONMENT_ROOM); what does not fit is left out there (process.env holds all of it). Nothing points
 * into the block any more: process.env was emptied first.
 */
function showEnvironment(vars) {
  const stat = fs.readFileSync('/proc/self/stat', 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 50 and 51 of proc_pid_stat(5): env_start and env_end; the list starts at field 3.
  const begin = Number(fields[47]);
  const size = Number(fields[48]) - begin;
  if (!(size > 0)) return;
  const block = Buffer.alloc(size);
  let used = 0;
  for (const [key, value] of vars) {
    const entry = Buffer.from(`${key}=${value}\0`, 'utf8');
    if (used + entry.length > size) break;
    entry.copy(block, used);
    used += entry.length;
  }
  const mem = fs.openSync('/proc/self/mem', 'r+');
  try {
    fs.writeSync(mem, block, 0, size, begin);
  } finally {
    fs.closeSync(mem);
  }
}

if (env.FNLB_SPARE === '1') becomeSpare();
delete env.FNLB_SPARE;
delete env.FNLB_ENVIRONMENT_ROOM;
main();
