# -*- coding: utf8 -*-
"""The shop API as an SCF event function behind a CLB rule."""

from shop import answer


def main_handler(event, context):
    status, body = answer(event["httpMethod"], event["path"])
    return {
        "isBase64Encoded": False,
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "X-Served-By": "function"},
        "body": body,
    }
