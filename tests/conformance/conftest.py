import pytest

from .cases import ADAPTER_CASES


@pytest.fixture(params=ADAPTER_CASES, ids=[case.id for case in ADAPTER_CASES])
def case(request):
    return request.param


@pytest.fixture
def pipe(case):
    return case.build()
