"""The official Python SDK against fnlb's API served over HTTPS: the endpoint's certificate is checked against the
certificate authority given to the SDK as `HttpProfile(certification=…)` (the SDK passes its own bundle, certifi's,
to requests otherwise, so REQUESTS_CA_BUNDLE does not reach it).

Run with warnings as errors (python -W error). Environment: FNLB_ENDPOINT (host:port of fnlb's API),
TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY, FNLB_CA_CERT (the PEM file of the authority that signed the API's
certificate). Prints "https: ok" at the end.
"""

import os
import sys

from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile


def client(certification):
    cred = credential.EnvironmentVariableCredential().get_credential()
    http = HttpProfile(protocol="https", endpoint=os.environ["FNLB_ENDPOINT"], certification=certification)
    return CommonClient("scf", "2018-04-16", cred, "ap-guangzhou", ClientProfile(httpProfile=http))


def main():
    trusted = client(os.environ["FNLB_CA_CERT"])
    trusted.call_json("CreateNamespace", {"Namespace": "over-https"})
    names = [n["Name"] for n in trusted.call_json("ListNamespaces", {})["Response"]["Namespaces"]]
    if "over-https" not in names:
        sys.exit(f"the namespace made over HTTPS is not listed: {names}")
    # Without the authority the SDK does not trust the endpoint.
    try:
        client(None).call_json("ListNamespaces", {})
    except TencentCloudSDKException as e:
        if "certificate" not in str(e).lower():
            sys.exit(f"refused for another reason than the certificate: {e}")
    else:
        sys.exit("an endpoint whose certificate no known authority signed was trusted")
    print("https: ok")


if __name__ == "__main__":
    main()
