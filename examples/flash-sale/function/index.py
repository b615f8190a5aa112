# -*- coding: utf8 -*-
"""The flash sale: places an order. The work (checking stock, writing the order) takes a moment.

Each answer names the instance that gave it and when the work started and ended, so that a client can see the
function scale out.
"""

import json
import time
import uuid

WORK_SECONDS = 0.1
INSTANCE = uuid.uuid4().hex[:12]


def main_handler(event, context):
    started = time.time()
    time.sleep(WORK_SECONDS)
    order = {
        "ok": True,
        "order": uuid.uuid4().hex,
        "instance": INSTANCE,
        "started": started,
        "ended": time.time(),
    }
    return {
        "isBase64Encoded": False,
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Served-By": "function"},
        "body": json.dumps(order),
    }
