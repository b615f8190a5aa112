"""Parameter validation as Tencent does it, seen through the official Python SDK's CommonClient (which sends any
action with any parameters, so unknown actions and parameters reach the server as a user's mistake would).

Run with warnings as errors (python -W error). Environment: FNLB_ENDPOINT (host:port of fnlb's API),
TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY, FNLB_VIP and FNLB_PORT (a listener's address). Prints one line per
case, then checks paging, and prints "validation: ok" at the end.
"""

import base64
import io
import os
import sys
import zipfile

from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

LONG = "x" * 1200
ZIP = {"ZipFile": "x"}


def _zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("index.py", "def main_handler(event, context):\n    return 'ok'\n")
    return buf.getvalue()


ZIP_BYTES = _zip()

# (service, action, parameters, the error code Tencent answers)
CASES = [
    ("scf", "CreateFunction", {"FunctionName": "1bad", "Runtime": "Python3.9", "Code": ZIP},
     "InvalidParameterValue.FunctionName"),
    ("scf", "CreateFunction", {"FunctionName": "ok", "Runtime": "Python3.9", "MemorySize": 200, "Code": ZIP},
     "InvalidParameterValue.MemorySize"),
    ("scf", "CreateFunction", {"FunctionName": "ok", "Runtime": "Python3.9", "MemorySize": 3200, "Code": ZIP},
     "InvalidParameterValue.MemorySize"),
    ("scf", "CreateFunction", {"FunctionName": "ok", "Runtime": "Python3.9", "Timeout": 0, "Code": ZIP},
     "LimitExceeded.Timeout"),
    ("scf", "CreateFunction", {"FunctionName": "ok", "Runtime": "Python3.9", "Timeout": 901, "Code": ZIP},
     "LimitExceeded.Timeout"),
    ("scf", "CreateFunction", {"FunctionName": "ok", "Runtime": "Python3.9", "Handler": "nodot", "Code": ZIP},
     "InvalidParameterValue.Handler"),
    ("scf", "CreateFunction", {"FunctionName": "ok", "Runtime": "Python3.9", "Description": LONG, "Code": ZIP},
     "InvalidParameterValue.Description"),
    ("scf", "CreateFunction", {"FunctionName": "ok", "Runtime": "Cobol", "Code": ZIP},
     "InvalidParameterValue.Runtime"),
    ("scf", "CreateFunction", {"FunctionName": "ok", "Runtime": "Python3.9", "Code": ZIP},
     "InvalidParameterValue.ZipFile"),
    ("scf", "CreateFunction", {"Runtime": "Python3.9", "Code": ZIP}, "MissingParameter"),
    ("scf", "GetFunction", {"FunctionName": "x", "Bogus": 1}, "UnknownParameter"),
    ("scf", "GetFunction", {"FunctionName": "nothere"}, "ResourceNotFound.Function"),
    ("scf", "GetFunction", {"FunctionName": "x", "Namespace": "nothere"}, "ResourceNotFound.Namespace"),
    ("scf", "NoSuchAction", {}, "InvalidAction"),
    ("scf", "ListFunctions", {"Offset": -1}, "InvalidParameterValue.Offset"),
    ("scf", "ListFunctions", {"Order": "SIDEWAYS"}, "InvalidParameterValue.Order"),
    ("scf", "CreateNamespace", {"Namespace": "Bad_NS!"}, "InvalidParameterValue.NamespaceInvalid"),
    ("clb", "CreateLoadBalancer", {"LoadBalancerType": "SIDEWAYS"}, "InvalidParameterValue"),
    ("clb", "CreateLoadBalancer", {"LoadBalancerType": "OPEN", "LoadBalancerName": LONG},
     "InvalidParameterValue.Length"),
    ("clb", "DescribeLoadBalancers", {"Limit": 101}, "InvalidParameterValue.Limit"),
    ("clb", "CreateListener", {"LoadBalancerId": "lb-nothere", "Ports": [80], "Protocol": "HTTP"},
     "InvalidParameter.LBIdNotFound"),
    ("clb", "DescribeListeners", {"LoadBalancerId": "lb-x", "Bogus": 1}, "UnknownParameter"),
    ("clb", "DescribeTaskStatus", {"TaskId": "never-issued"}, "InvalidParameter"),
    ("clb", "NoSuchAction", {}, "InvalidAction"),
    ("scf", "ListFunctions", {"Filters": [{"Name": "Colour", "Values": ["red"]}]}, "InvalidParameterValue.Filters"),
    ("clb", "DescribeLoadBalancers", {"Filters": [{"Name": "colour", "Values": ["red"]}]},
     "InvalidParameterValue.Filters"),
]


def load_balancer_cases(lb, listener, location):
    """Cases on a load balancer with an HTTP listener and a rule."""
    rule = {"LoadBalancerId": lb, "ListenerId": listener}
    target = dict(rule, LocationId=location)
    function = {"FunctionNamespace": "default", "FunctionName": "x", "FunctionQualifier": "$LATEST"}
    return [
        ("clb", "CreateListener", {"LoadBalancerId": lb, "Ports": [0], "Protocol": "HTTP"},
         "InvalidParameterValue.Range"),
        ("clb", "CreateListener", {"LoadBalancerId": lb, "Ports": [70000], "Protocol": "HTTP"},
         "InvalidParameterValue.Range"),
        ("clb", "CreateListener", {"LoadBalancerId": lb, "Ports": [8089], "Protocol": "FTP"}, "InvalidParameterValue"),
        ("clb", "CreateRule", dict(rule, Rules=[{"Domain": "bad domain!", "Url": "/"}]), "InvalidParameterValue"),
        ("clb", "CreateRule", dict(rule, Rules=[{"Domain": "b.test", "Url": "no-slash"}]), "InvalidParameterValue"),
        ("clb", "CreateRule", dict(rule, Rules=[{"Domain": "b.test", "Url": "/", "HealthCheck": {"IntervalTime": 1}}]),
         "InvalidParameterValue.Range"),
        ("clb", "CreateRule", dict(rule, Rules=[{"Domain": "b.test", "Url": "/", "HealthCheck": {"HttpCode": 64}}]),
         "InvalidParameterValue.Range"),
        ("clb", "RegisterTargets", dict(target, Targets=[{"EniIp": "127.0.0.1", "Port": 80, "Weight": 101}]),
         "InvalidParameterValue.Range"),
        ("clb", "RegisterTargets", dict(target, Targets=[{"EniIp": "127.0.0.1", "Port": 0}]),
         "InvalidParameterValue.Range"),
        ("clb", "RegisterFunctionTargets", dict(target, FunctionTargets=[{"Function": function, "Weight": 101}]),
         "InvalidParameterValue.Range"),
    ]


def check_pages(clients):
    """Offset, Limit and Order over three functions and three load balancers."""
    code = {"ZipFile": base64.b64encode(ZIP_BYTES).decode()}
    for name in ["page-a", "page-b", "page-c"]:
        clients["scf"].call_json("CreateFunction", {"FunctionName": name, "Runtime": "Python3.9", "Code": code})
    listed = clients["scf"].call_json("ListFunctions", {"Offset": 1, "Limit": 1, "Order": "ASC"})["Response"]
    assert listed["TotalCount"] == 3 and [f["FunctionName"] for f in listed["Functions"]] == ["page-b"], listed
    listed = clients["scf"].call_json("ListFunctions", {"Orderby": "FunctionName", "Order": "DESC"})["Response"]
    assert [f["FunctionName"] for f in listed["Functions"]] == ["page-c", "page-b", "page-a"], listed
    listed = clients["scf"].call_json("ListFunctions", {"SearchKey": "-b"})["Response"]
    assert [f["FunctionName"] for f in listed["Functions"]] == ["page-b"], listed
    described = clients["clb"].call_json("DescribeLoadBalancers", {"Offset": 0, "Limit": 1})["Response"]
    assert described["TotalCount"] == 1 and len(described["LoadBalancerSet"]) == 1, described

    def count(service, action, params, key="TotalCount"):
        return clients[service].call_json(action, params)["Response"][key]

    def one(name, values):
        return [{"Name": name, "Values": values}]

    assert count("scf", "ListFunctions", {"Filters": one("Runtime", ["Python3.9"])}) == 3
    assert count("scf", "ListFunctions", {"Filters": one("Type", ["HTTP"])}) == 0
    assert count("scf", "ListFunctions", {"Filters": one("VpcId", ["vpc-1"])}) == 0
    assert count("clb", "DescribeLoadBalancers", {"Filters": one("charge-type", ["POSTPAID_BY_HOUR"])}) == 1
    assert count("clb", "DescribeLoadBalancers", {"Filters": one("function-name", ["page-a"])}) == 0
    lb = described["LoadBalancerSet"][0]["LoadBalancerId"]
    health = clients["clb"].call_json("DescribeTargetHealth", {"LoadBalancerIds": [lb], "LocationIds": ["loc-none"]})
    assert health["Response"]["LoadBalancers"][0]["Listeners"][0]["Rules"] == [], health
    print("pages and filters: ok")


def main():
    cred = credential.EnvironmentVariableCredential().get_credential()
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=os.environ["FNLB_ENDPOINT"]))
    clients = {
        "scf": CommonClient("scf", "2018-04-16", cred, "ap-guangzhou", profile),
        "clb": CommonClient("clb", "2018-03-17", cred, "ap-guangzhou", profile),
    }
    clb = clients["clb"]
    vip, port = os.environ["FNLB_VIP"], int(os.environ["FNLB_PORT"])
    lb = clb.call_json("CreateLoadBalancer", {"LoadBalancerType": "OPEN", "Vip": vip})["Response"]["LoadBalancerIds"][0]
    listener = clb.call_json("CreateListener", {"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTP"})
    listener = listener["Response"]["ListenerIds"][0]
    location = clb.call_json("CreateRule", {"LoadBalancerId": lb, "ListenerId": listener,
                                            "Rules": [{"Domain": "a.test", "Url": "/"}]})["Response"]["LocationIds"][0]
    failed = 0
    for service, action, params, expected in CASES + load_balancer_cases(lb, listener, location):
        try:
            clients[service].call_json(action, params)
            got, message, request_id = "no error", "", "x"
        except TencentCloudSDKException as e:
            got, message, request_id = e.get_code(), e.get_message(), e.get_request_id()
        good = got == expected and message.endswith(".") and request_id
        failed += not good
        print("ok  " if good else "FAIL", service, action, expected, "<-", got, message)
    if failed:
        sys.exit(f"validation: {failed} cases failed")
    check_pages(clients)
    print("validation: ok")


if __name__ == "__main__":
    main()
