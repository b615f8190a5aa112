"""Every field Tencent documents for a response is present (null where fnlb has no value), for the read actions
of a whole setup: a function with a version and an alias, a load balancer with an HTTP listener, a rule bound to
the function, and a rule with a server target. The documentation is tccli's own API description (api.json).

Environment: FNLB_ENDPOINT, TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY, FNLB_VIP, FNLB_PORT,
FNLB_EXAMPLE (the seed's index.py). Prints the missing fields and exits non-zero if any.
"""

import base64
import glob
import io
import json
import os
import sys
import zipfile

import tccli
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

SERVICES = {"scf": "2018-04-16", "clb": "2018-03-17"}


def api(service):
    folder = "v" + SERVICES[service].replace("-", "")
    path = os.path.join(os.path.dirname(tccli.__file__), "services", service, folder, "api.json")
    with open(glob.glob(path)[0]) as f:
        return json.load(f)


def missing(spec, name, value, where, out):
    """Documented members of object `name` absent from `value` (recursively through objects and lists)."""
    if not isinstance(value, dict):
        return
    for member in spec["objects"][name]["members"]:
        field = member["name"]
        if field not in value:
            out.append(f"{where}.{field}")
            continue
        inner = value[field]
        target = member.get("member")
        if target in spec["objects"]:
            for item in inner if isinstance(inner, list) else [inner]:
                missing(spec, target, item, f"{where}.{field}", out)


def main():
    cred = credential.EnvironmentVariableCredential().get_credential()
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=os.environ["FNLB_ENDPOINT"]))
    clients = {s: CommonClient(s, v, cred, "ap-guangzhou", profile) for s, v in SERVICES.items()}
    specs = {s: api(s) for s in SERVICES}

    def call(service, action, params):
        return clients[service].call_json(action, params)["Response"]

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        with open(os.environ["FNLB_EXAMPLE"], "rb") as f:
            z.writestr("index.py", f.read())
    code = {"ZipFile": base64.b64encode(buf.getvalue()).decode()}
    call("scf", "CreateFunction", {"FunctionName": "fields", "Runtime": "Python3.9", "Handler": "index.main_handler",
                                   "Code": code})
    call("scf", "PublishVersion", {"FunctionName": "fields"})
    call("scf", "CreateAlias", {"FunctionName": "fields", "Name": "live", "FunctionVersion": "1"})
    vip, port = os.environ["FNLB_VIP"], int(os.environ["FNLB_PORT"])
    lb = call("clb", "CreateLoadBalancer", {"LoadBalancerType": "OPEN", "Vip": vip})["LoadBalancerIds"][0]
    listener = call("clb", "CreateListener", {"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTP"})["ListenerIds"][0]
    rules = call("clb", "CreateRule", {"LoadBalancerId": lb, "ListenerId": listener, "Rules": [
        {"Domain": "f.fnlb.test", "Url": "/"}, {"Domain": "s.fnlb.test", "Url": "/"}]})["LocationIds"]
    call("clb", "RegisterFunctionTargets", {"LoadBalancerId": lb, "ListenerId": listener, "LocationId": rules[0],
        "FunctionTargets": [{"Function": {"FunctionNamespace": "default", "FunctionName": "fields",
                                          "FunctionQualifier": "$LATEST"}, "Weight": 10}]})
    call("clb", "RegisterTargets", {"LoadBalancerId": lb, "ListenerId": listener, "LocationId": rules[1],
                                    "Targets": [{"EniIp": "127.0.0.1", "Port": 9, "Weight": 10}]})

    reads = [
        ("scf", "GetFunction", {"FunctionName": "fields"}),
        ("scf", "ListFunctions", {}),
        ("scf", "ListTriggers", {"FunctionName": "fields"}),
        ("scf", "ListVersionByFunction", {"FunctionName": "fields"}),
        ("scf", "GetAlias", {"FunctionName": "fields", "Name": "live"}),
        ("scf", "ListAliases", {"FunctionName": "fields"}),
        ("scf", "ListNamespaces", {}),
        ("scf", "GetFunctionLogs", {"FunctionName": "fields"}),
        ("scf", "Invoke", {"FunctionName": "fields"}),
        ("clb", "DescribeLoadBalancers", {}),
        ("clb", "DescribeListeners", {"LoadBalancerId": lb}),
        ("clb", "DescribeTargets", {"LoadBalancerId": lb}),
        ("clb", "DescribeTargetHealth", {"LoadBalancerIds": [lb]}),
    ]
    absent = []
    for service, action, params in reads:
        response = call(service, action, params)
        spec = specs[service]
        missing(spec, spec["actions"][action]["output"], response, action, absent)
    for field in absent:
        print("missing:", field)
    if absent:
        sys.exit(f"fields: {len(absent)} documented fields are missing")
    print("fields: ok")


if __name__ == "__main__":
    main()
