"""Parameter validation as Tencent does it, seen through the official Python SDK's CommonClient (which sends any
action with any parameters, so unknown actions and parameters reach the server as a user's mistake would).

Run with warnings as errors (python -W error). Environment: FNLB_ENDPOINT (host:port of fnlb's API),
TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY. Prints one line per case and "validation: ok" at the end.
"""

import os
import sys

from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

LONG = "x" * 1200
ZIP = {"ZipFile": "x"}

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
]


def main():
    cred = credential.EnvironmentVariableCredential().get_credential()
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=os.environ["FNLB_ENDPOINT"]))
    clients = {
        "scf": CommonClient("scf", "2018-04-16", cred, "ap-guangzhou", profile),
        "clb": CommonClient("clb", "2018-03-17", cred, "ap-guangzhou", profile),
    }
    failed = 0
    for service, action, params, expected in CASES:
        try:
            clients[service].call_json(action, params)
            got, message, request_id = "no error", "", "x"
        except TencentCloudSDKException as e:
            got, message, request_id = e.get_code(), e.get_message(), e.get_request_id()
        good = got == expected and message.endswith(".") and request_id
        failed += not good
        print("ok  " if good else "FAIL", service, action, expected, "<-", got, message)
    if failed:
        sys.exit(f"validation: {failed} of {len(CASES)} cases failed")
    print("validation: ok")


if __name__ == "__main__":
    main()
