"""The seed's Hello CLB flow, driven only by the official tencentcloud-sdk-python, unchanged.

Run with warnings as errors (python -W error): an unknown field in a response would be a warning.
Environment: FNLB_ENDPOINT (host:port of fnlb's API), TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY,
FNLB_VIP and FNLB_PORT (where the listener goes), FNLB_EXAMPLE (the seed's index.py).
"""

import base64
import io
import json
import os
import sys
import time
import urllib.request
import zipfile

from tencentcloud.clb.v20180317 import clb_client
from tencentcloud.clb.v20180317 import models as clb_models
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416 import models as scf_models
from tencentcloud.scf.v20180416 import scf_client

REGION = "ap-guangzhou"
DEADLINE_SECONDS = 30


def clients():
    cred = credential.EnvironmentVariableCredential().get_credential()
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=os.environ["FNLB_ENDPOINT"]))
    return scf_client.ScfClient(cred, REGION, profile), clb_client.ClbClient(cred, REGION, profile)


def call(client, models, action, params):
    request = getattr(models, action + "Request")()
    request.from_json_string(json.dumps(params))
    response = getattr(client, action)(request)
    return json.loads(response.to_json_string())


def main():
    scf, clb = clients()
    with open(os.environ["FNLB_EXAMPLE"], "rb") as f:
        code = f.read()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("index.py", code)
    call(scf, scf_models, "CreateFunction", {
        "FunctionName": "hello-clb",
        "Runtime": "Python3.6",
        "Handler": "index.main_handler",
        "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()},
    })
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        function = call(scf, scf_models, "GetFunction", {"FunctionName": "hello-clb"})
        if function["Status"] == "Active":
            break
        assert time.monotonic() < deadline, "the function never became Active"
        time.sleep(0.1)

    vip, port = os.environ["FNLB_VIP"], int(os.environ["FNLB_PORT"])
    lb_id = call(clb, clb_models, "CreateLoadBalancer", {"LoadBalancerType": "OPEN", "Vip": vip})["LoadBalancerIds"][0]
    listener_id = call(clb, clb_models, "CreateListener", {
        "LoadBalancerId": lb_id, "Ports": [port], "Protocol": "HTTP", "ListenerNames": ["web"],
    })["ListenerIds"][0]
    location_id = call(clb, clb_models, "CreateRule", {
        "LoadBalancerId": lb_id, "ListenerId": listener_id, "Rules": [{"Domain": "hello.fnlb.test", "Url": "/"}],
    })["LocationIds"][0]
    bound = call(clb, clb_models, "RegisterFunctionTargets", {
        "LoadBalancerId": lb_id, "ListenerId": listener_id, "LocationId": location_id,
        "FunctionTargets": [{"Function": {"FunctionNamespace": "default", "FunctionName": "hello-clb",
                                          "FunctionQualifier": "$LATEST"}, "Weight": 10}],
    })
    assert call(clb, clb_models, "DescribeTaskStatus", {"TaskId": bound["RequestId"]})["Status"] == 0

    triggers = call(scf, scf_models, "ListTriggers", {"FunctionName": "hello-clb"})
    assert triggers["TotalCount"] == 1, triggers
    access_path = json.loads(triggers["Triggers"][0]["TriggerDesc"])["accessPath"]
    with urllib.request.urlopen(access_path, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html"
        body = response.read().decode()
    assert body == "<html><body><h1>Hello CLB</h1></body></html>", body

    described = call(clb, clb_models, "DescribeLoadBalancers", {"LoadBalancerIds": [lb_id]})
    assert described["LoadBalancerSet"][0]["LoadBalancerVips"] == [vip]
    listeners = call(clb, clb_models, "DescribeListeners", {"LoadBalancerId": lb_id})
    assert listeners["Listeners"][0]["Rules"][0]["LocationId"] == location_id
    targets = call(clb, clb_models, "DescribeTargets", {"LoadBalancerId": lb_id})
    assert targets["Listeners"][0]["Rules"][0]["FunctionTargets"][0]["Function"]["FunctionName"] == "hello-clb"
    invoked = call(scf, scf_models, "Invoke", {"FunctionName": "hello-clb", "LogType": "Tail"})
    assert "Hello CLB" in invoked["Result"]["RetMsg"]
    listed = call(scf, scf_models, "ListFunctions", {})
    assert listed["TotalCount"] == 1

    # An API error reaches the SDK as an exception carrying the code.
    try:
        call(scf, scf_models, "GetFunction", {"FunctionName": "no-such-function"})
        raise AssertionError("GetFunction of a missing function succeeded")
    except TencentCloudSDKException as e:
        assert e.get_code() == "ResourceNotFound.Function", e
        assert e.get_request_id()

    call(clb, clb_models, "DeregisterFunctionTargets", {
        "LoadBalancerId": lb_id, "ListenerId": listener_id, "LocationId": location_id,
        "FunctionTargets": [{"Function": {"FunctionNamespace": "default", "FunctionName": "hello-clb",
                                          "FunctionQualifier": "$LATEST"}}],
    })
    call(clb, clb_models, "DeleteRule", {"LoadBalancerId": lb_id, "ListenerId": listener_id, "LocationIds": [location_id]})
    call(clb, clb_models, "DeleteListener", {"LoadBalancerId": lb_id, "ListenerId": listener_id})
    call(clb, clb_models, "DeleteLoadBalancer", {"LoadBalancerIds": [lb_id]})
    call(scf, scf_models, "DeleteFunction", {"FunctionName": "hello-clb"})
    assert call(scf, scf_models, "ListFunctions", {})["TotalCount"] == 0
    assert call(clb, clb_models, "DescribeLoadBalancers", {})["TotalCount"] == 0
    print("Hello CLB via the SDK: ok")


if __name__ == "__main__":
    try:
        main()
    except TencentCloudSDKException as e:
        print("SDK error: %s" % e, file=sys.stderr)
        sys.exit(1)
