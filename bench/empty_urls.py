"""A URLconf with no pages: the benchmark servers only need to answer (404) when ready."""

urlpatterns: list[object] = []
