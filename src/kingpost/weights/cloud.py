"""Object-store sources (s3://, gs://, azure://): listed with the cloud's SDK, fetched by kingpost.

Each SDK is an optional extra; without it a source of that kind is one sentence naming the extra.
The SDK lists the objects under the prefix and signs or authorises each URL; the bytes then go
through kingpost's downloader (resume, atomic move), as for every other source. Credentials come
from the SDK's usual chain, or from the source's secret holding Truss's JSON credential format.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from kingpost.errors import FetchError
from kingpost.weights.download import FileRequest
from kingpost.weights.sources import Source

EXTRAS = {"s3": ("boto3", "s3"), "gs": ("google.cloud.storage", "gcs"), "azure": ("azure.storage.blob", "azure")}


def require_sdk(source: Source) -> Any:
    module, extra = EXTRAS[source.kind]
    try:
        return __import__(module, fromlist=["_"])
    except ModuleNotFoundError:
        raise FetchError(f"{source.key}: {source.url} is a {source.kind}:// source, which needs the {module} "
                         f"package: pip install 'kingpost[{extra}]'.") from None


def list_files(source: Source, secret: str | None) -> tuple[str, list[FileRequest]]:
    sdk = require_sdk(source)
    bucket, _, prefix = source.location.partition("/")
    creds: dict[str, Any] = {}
    if secret:
        try:
            creds = json.loads(secret)
        except ValueError:
            raise FetchError(f"{source.key}: the secret {source.secret!r} is not the JSON credentials a "
                             f"{source.kind}:// source needs.") from None
    try:
        if source.kind == "s3":
            return "", _s3(sdk, source, bucket, prefix, creds)
        if source.kind == "gs":
            return "", _gs(sdk, source, bucket, prefix, creds)
        return "", _azure(sdk, source, bucket, prefix, creds)
    except FetchError:
        raise
    except Exception as exc:
        raise FetchError(f"{source.key}: {source.url} could not be listed ({type(exc).__name__}: {exc}).") from exc


def _relative(name: str, prefix: str) -> str:
    return name[len(prefix):].lstrip("/") if prefix else name


def _s3(boto3: Any, source: Source, bucket: str, prefix: str, creds: dict[str, Any]) -> list[FileRequest]:
    keys = {k: creds[k] for k in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token",
                                  "region_name") if k in creds}
    client = boto3.client("s3", **keys)
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": obj["Key"]},
                                                ExpiresIn=6 * 3600)
            out.append(FileRequest(key=source.key, url=url, label=_relative(obj["Key"], prefix), size=obj["Size"]))
    return out


def _gs(storage: Any, source: Source, bucket: str, prefix: str, creds: dict[str, Any]) -> list[FileRequest]:
    client = storage.Client.from_service_account_info(creds) if creds else storage.Client()
    import google.auth.transport.requests

    credentials = client._credentials
    credentials.refresh(google.auth.transport.requests.Request())
    headers = {"Authorization": f"Bearer {credentials.token}"}
    return [FileRequest(key=source.key, label=_relative(blob.name, prefix), size=blob.size, headers=headers,
                        url=f"https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/"
                            f"{quote(blob.name, safe='')}?alt=media")
            for blob in client.list_blobs(bucket, prefix=prefix) if not blob.name.endswith("/")]


def _azure(blob: Any, source: Source, account: str, rest: str, creds: dict[str, Any]) -> list[FileRequest]:
    container, _, prefix = rest.partition("/")
    url = f"https://{account}.blob.core.windows.net"
    credential = creds.get("account_key") or creds.get("sas_token")
    service = blob.BlobServiceClient(account_url=url, credential=credential)
    client = service.get_container_client(container)
    headers = {"x-ms-version": "2021-08-06"}
    query = f"?{creds['sas_token'].lstrip('?')}" if creds.get("sas_token") else ""
    if not query:
        from azure.identity import DefaultAzureCredential

        token = DefaultAzureCredential().get_token("https://storage.azure.com/.default").token
        headers["Authorization"] = f"Bearer {token}"
    return [FileRequest(key=source.key, label=_relative(item.name, prefix), size=item.size, headers=headers,
                        url=f"{url}/{container}/{quote(item.name)}{query}")
            for item in client.list_blobs(name_starts_with=prefix or None)]
