"""PLACEHOLDER until the real router lands (helper-2 overwrites this file)."""

from fastapi import APIRouter

from imagetagger.api.access import Guard, bearer_or_api_key
from imagetagger.api.errors import error_response

router = APIRouter()
guard = Guard(identify=bearer_or_api_key, refuse=error_response)
