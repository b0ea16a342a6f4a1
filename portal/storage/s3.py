"""Blobs in any S3-compatible object store, through boto3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from portal.errors import StorageError
from portal.storage.base import BlobNotFound, BlobStorage, check_key

MULTIPART_THRESHOLD = 16 * 1024 * 1024


class S3Storage(BlobStorage):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        encryption: str | None = "AES256",
    ) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.encryption = encryption or None
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"},
                s3={"addressing_style": "path"} if endpoint_url else None,
            ),
        )
        self.transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD
        )

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put_file(self, key: str, path: Path) -> None:
        extra = {"ServerSideEncryption": self.encryption} if self.encryption else {}
        try:
            self.client.upload_file(
                str(path), self.bucket, self._key(key), ExtraArgs=extra, Config=self.transfer
            )
        except (BotoCoreError, ClientError, Boto3Error) as exc:  # boto3 aborts a failed multipart
            raise StorageError(f"S3 upload failed: {exc}") from exc

    def open(self, key: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise BlobNotFound(f"no blob {key!r}") from None
            raise StorageError(f"S3 read failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 read failed: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 delete failed: {exc}") from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                return False
            raise StorageError(f"S3 head failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 head failed: {exc}") from exc
        return True

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 listing failed: {exc}") from exc

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 bucket {self.bucket!r} is not reachable: {exc}") from exc
