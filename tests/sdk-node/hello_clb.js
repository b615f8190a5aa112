"use strict";
// The seed's Hello CLB flow, driven only by the official tencentcloud-sdk-nodejs, unchanged, pointed at fnlb the
// obvious way: profile.httpProfile = { endpoint: "HOST:PORT", protocol: "http://" }.
//
// Environment: FNLB_ENDPOINT (host:port of fnlb's API), TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY,
// FNLB_VIP and FNLB_PORT (where the listener goes), FNLB_EXAMPLE (the seed's index.py), FNLB_FORM (how the SDK
// signs and sends: tc3-post, tc3-get, hmacsha1-get or hmacsha256-post), FNLB_FUNCTION (the function's name).
// Prints "Hello CLB via the Node.js SDK (FORM): ok" when every step succeeded; exits 1 otherwise.

const fs = require("fs");
const http = require("http");
const tencentcloud = require("tencentcloud-sdk-nodejs");

const REGION = "ap-guangzhou";
const DEADLINE_MS = 30000;
const DOMAIN = "hello.fnlb.test";
const BODY = "<html><body><h1>Hello CLB</h1></body></html>";

/// The profile options of each form, besides the endpoint.
const FORMS = {
  "tc3-post": {},
  "tc3-get": { httpProfile: { reqMethod: "GET" } },
  "hmacsha1-get": { signMethod: "HmacSHA1", httpProfile: { reqMethod: "GET" } },
  "hmacsha256-post": { signMethod: "HmacSHA256" },
};

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function clients(form) {
  const options = FORMS[form];
  if (!options) throw new Error(`unknown FNLB_FORM ${form}`);
  const profile = {
    ...options,
    httpProfile: { ...options.httpProfile, endpoint: env("FNLB_ENDPOINT"), protocol: "http://" },
  };
  const config = {
    credential: { secretId: env("TENCENTCLOUD_SECRET_ID"), secretKey: env("TENCENTCLOUD_SECRET_KEY") },
    region: REGION,
    profile,
  };
  return {
    scf: new tencentcloud.scf.v20180416.Client(config),
    clb: new tencentcloud.clb.v20180317.Client(config),
  };
}

// CRC-32 (IEEE), for the zip's one entry.
function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

// A zip holding one file, stored (not compressed).
function zipOne(name, data) {
  const nameBytes = Buffer.from(name);
  const crc = crc32(data);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(data.length, 18);
  local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(nameBytes.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(20, 6);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(data.length, 20);
  central.writeUInt32LE(data.length, 24);
  central.writeUInt16LE(nameBytes.length, 28);
  central.writeUInt32LE(0o100644 * 0x10000, 38);
  const centralOffset = local.length + nameBytes.length + data.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + nameBytes.length, 12);
  end.writeUInt32LE(centralOffset, 16);
  return Buffer.concat([local, nameBytes, data, central, nameBytes, end]);
}

function assert(condition, what) {
  if (!condition) throw new Error(`assertion failed: ${what}`);
}

// Calls `check` until it returns a value other than undefined, pausing between calls, at most DEADLINE_MS.
async function eventually(what, check) {
  const deadline = Date.now() + DEADLINE_MS;
  let pause = 10;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    assert(Date.now() < deadline, `${what} within ${DEADLINE_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, 200);
  }
}

// One GET through the load balancer: the status and the body.
function get(vip, port) {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: vip, port, path: "/", headers: { Host: DOMAIN }, timeout: DEADLINE_MS }, (response) => {
      const chunks = [];
      response.on("data", (chunk) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode, body: Buffer.concat(chunks).toString() }));
      response.on("error", reject);
    });
    request.on("timeout", () => request.destroy(new Error("no answer in time")));
    request.on("error", reject);
  });
}

async function main() {
  const form = env("FNLB_FORM");
  const name = env("FNLB_FUNCTION");
  const { scf, clb } = clients(form);
  const code = zipOne("index.py", fs.readFileSync(env("FNLB_EXAMPLE")));

  await scf.CreateFunction({
    FunctionName: name,
    Runtime: "Python3.9",
    Handler: "index.main_handler",
    MemorySize: 128,
    Code: { ZipFile: code.toString("base64") },
  });
  await eventually("the function is Active", async () => {
    const fn = await scf.GetFunction({ FunctionName: name });
    return fn.Status === "Active" ? fn : undefined;
  });

  const vip = env("FNLB_VIP");
  const port = Number(env("FNLB_PORT"));
  const lb = await clb.CreateLoadBalancer({ LoadBalancerType: "OPEN", Vip: vip });
  const lbId = lb.LoadBalancerIds[0];
  const listener = await clb.CreateListener({ LoadBalancerId: lbId, Ports: [port], Protocol: "HTTP" });
  const listenerId = listener.ListenerIds[0];
  const rule = await clb.CreateRule({
    LoadBalancerId: lbId,
    ListenerId: listenerId,
    Rules: [{ Domain: DOMAIN, Url: "/", SessionExpireTime: 0 }],
  });
  const locationId = rule.LocationIds[0];
  const bound = await clb.RegisterFunctionTargets({
    LoadBalancerId: lbId,
    ListenerId: listenerId,
    LocationId: locationId,
    FunctionTargets: [
      { Function: { FunctionNamespace: "default", FunctionName: name, FunctionQualifier: "$LATEST" }, Weight: 10 },
    ],
  });
  await eventually("the binding's task is done", async () => {
    const task = await clb.DescribeTaskStatus({ TaskId: bound.RequestId });
    return task.Status === 0 ? task : undefined;
  });

  const answer = await get(vip, port);
  assert(answer.status === 200, `GET through the rule answers 200, not ${answer.status}`);
  assert(answer.body === BODY, `GET through the rule answers the function's body, not ${answer.body}`);

  const targets = await clb.DescribeTargets({ LoadBalancerId: lbId, ListenerIds: [listenerId] });
  const functionTarget = targets.Listeners[0].Rules[0].FunctionTargets[0];
  assert(functionTarget.Function.FunctionName === name, "DescribeTargets lists the function");
  assert(functionTarget.Weight === 10, "DescribeTargets keeps the weight");
  const fn = await scf.GetFunction({ FunctionName: name });
  assert(fn.Runtime === "Python3.9" && fn.MemorySize === 128, "GetFunction reports the runtime and memory");
  const listed = await scf.ListFunctions({ Limit: 100, Filters: [{ Name: "Runtime", Values: ["Python3.9"] }] });
  assert(listed.Functions.some((f) => f.FunctionName === name), "ListFunctions lists the function");

  // An API error reaches the SDK as an exception carrying the code.
  let refused;
  try {
    await scf.GetFunction({ FunctionName: `${name}-missing` });
  } catch (e) {
    refused = e;
  }
  assert(refused && refused.code === "ResourceNotFound.Function", `a missing function is refused: ${refused}`);
  assert(refused.requestId, "the refusal carries a RequestId");

  await clb.DeleteRule({ LoadBalancerId: lbId, ListenerId: listenerId, LocationIds: [locationId] });
  await clb.DeleteLoadBalancer({ LoadBalancerIds: [lbId], ForceDelete: false });
  await scf.DeleteFunction({ FunctionName: name });
  const left = await scf.ListFunctions({ SearchKey: name });
  assert(!left.Functions.some((f) => f.FunctionName === name), "the function is gone");
  console.log(`Hello CLB via the Node.js SDK (${form}): ok`);
}

main().catch((e) => {
  console.error(`failed: ${e && e.code ? `${e.code}: ` : ""}${e && e.message ? e.message : e}`);
  process.exit(1);
});
