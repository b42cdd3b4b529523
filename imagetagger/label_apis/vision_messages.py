"""Cloud Vision v1's request messages, as protobuf's JSON mapping reads them.

Field names in lowerCamel or snake_case, enums by name or number, bytes as base64,
unknown fields refused (Google answers those 400 too). :mod:`cloud_vision` turns a
parsed request into jobs and answers.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from imagetagger.label_apis.common import decode_base64

MAX_REQUESTS = 16  # images per call: Google's limit

#: google.cloud.vision.v1.Feature.Type.
FEATURE_TYPES: dict[str, int] = {
    "TYPE_UNSPECIFIED": 0,
    "FACE_DETECTION": 1,
    "LANDMARK_DETECTION": 2,
    "LOGO_DETECTION": 3,
    "LABEL_DETECTION": 4,
    "TEXT_DETECTION": 5,
    "SAFE_SEARCH_DETECTION": 6,
    "IMAGE_PROPERTIES": 7,
    "CROP_HINTS": 9,
    "WEB_DETECTION": 10,
    "DOCUMENT_TEXT_DETECTION": 11,
    "PRODUCT_SEARCH": 12,
    "OBJECT_LOCALIZATION": 19,
}
FEATURE_NAMES = {number: name for name, number in FEATURE_TYPES.items()}


def _camel(snake: str) -> AliasChoices:
    head, *rest = snake.split("_")
    return AliasChoices(head + "".join(part.title() for part in rest), snake)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageSource(_Message):
    image_uri: str | None = Field(None, validation_alias=_camel("image_uri"))
    gcs_image_uri: str | None = Field(None, validation_alias=_camel("gcs_image_uri"))


class Image(_Message):
    content: bytes | None = None
    source: ImageSource | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _base64(cls, value: Any) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise PydanticCustomError("bytes_type", "Image content should be a base64 string")
        try:
            return decode_base64(value)
        except ValueError:
            raise PydanticCustomError("base64", "Image content is not valid base64") from None


class Feature(_Message):
    type: int = 0
    max_results: int = Field(0, validation_alias=_camel("max_results"))
    model: str | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _enum(cls, value: Any) -> int:
        # protobuf JSON: the enum's name or its number; an unknown name does not parse.
        if isinstance(value, str):
            if value not in FEATURE_TYPES:
                raise PydanticCustomError("enum", "Unknown feature type {value}", {"value": value})
            return FEATURE_TYPES[value]
        if isinstance(value, bool) or not isinstance(value, int):
            raise PydanticCustomError("enum", "Feature type should be a name or a number")
        return value


class AnnotateImageRequest(_Message):
    image: Image | None = None
    features: list[Feature] = []
    image_context: dict[str, Any] | None = Field(None, validation_alias=_camel("image_context"))


class BatchAnnotateImagesRequest(_Message):
    requests: list[AnnotateImageRequest] = Field(min_length=1, max_length=MAX_REQUESTS)
    parent: str | None = None
    labels: dict[str, str] | None = None
