"""configdoc: a tiny config model becomes Markdown key tables inside a page's generated blocks."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from agentos.configdoc import ConfigDocError, Row, render, rows, stale_sections, table


class Hooks(BaseModel):
    before: str | None = Field(default=None, description="Before the run.")


class Repo(BaseModel):
    name: str = Field(description="The repo's name.")
    hooks: Hooks = Field(default_factory=Hooks, description="Commands at fixed moments.")


class Limits(BaseModel):
    timeout_s: float = Field(default=300.0, description="The time limit | in seconds.")
    codes: list[str] = Field(default_factory=lambda: ["quota_limited", "timeout"], description="Transient codes.")


class Tiny(BaseModel):
    enabled: bool = Field(default=False, description="Start it.")
    mode: str = Field(default="full", description="`full` or\n   `manual`.")
    repos: list[Repo] = Field(default_factory=list, description="The repositories (§2.1).")
    extra: dict[str, str] = Field(default_factory=dict, description="Extra values.")
    limits: Limits = Field(default_factory=Limits, description="The limits.")
    github: Hooks | None = Field(default=None, description="Optional.")


PAGE = """# Tiny

Prose before.

## 2. Top level

<!-- generated: top-level -->
old
<!-- /generated -->

### 2.1 `repos[]`

<!-- generated: repos -->
<!-- /generated -->

Hooks, explained by hand:

<!-- generated: repos.hooks -->
<!-- /generated -->

### 2.2 `limits`

<!-- generated: limits -->
<!-- /generated -->

### 2.3 `github`

<!-- generated: github -->
<!-- /generated -->

Prose after.
"""


class TestRows:
    def test_each_field_is_a_row_with_its_default_rendered_as_the_page_shows_it(self) -> None:
        """Booleans lower-case, lists and dicts in YAML flow style, whole floats as integers, None as `none`."""
        sections = rows(Tiny, {"limits": "see §2.2", "repos.hooks": "see below"})
        assert sections["top-level"] == [
            Row("enabled", "`false`", "Start it."),
            Row("mode", "`full`", "`full` or `manual`."),
            Row("repos", "`[]`", "The repositories (§2.1)."),
            Row("extra", "`{}`", "Extra values."),
            Row("limits", "see §2.2", "The limits."),
            Row("github", "none", "Optional."),
        ]
        assert sections["repos"] == [
            Row("name", "required", "The repo's name."),
            Row("hooks", "see below", "Commands at fixed moments."),
        ]
        assert sections["limits"] == [
            Row("timeout_s", "`300`", "The time limit \\| in seconds."),
            Row("codes", "`[quota_limited, timeout]`", "Transient codes."),
        ]
        assert list(sections) == ["top-level", "repos", "repos.hooks", "limits", "github"]

    def test_a_shown_default_replaces_the_models_and_must_name_a_key(self) -> None:
        """An override shows the effective default; one for a key that does not exist is an error."""
        assert rows(Tiny, shown_defaults={"repos.hooks.before": "`echo`"})["repos.hooks"][0].default == "`echo`"
        with pytest.raises(ConfigDocError, match=r"shown default for limits\.gone: no such config key"):
            rows(Tiny, shown_defaults={"limits.gone": "x"})

    def test_a_key_without_description_fails_naming_it(self) -> None:
        """A key added without Field(description=...) stops the generator with its dotted path."""

        class Loose(BaseModel):
            retries: int = 3

        class WithLoose(BaseModel):
            loops: Loose = Field(default_factory=Loose, description="Loops.")

        with pytest.raises(ConfigDocError, match=r"^config key loops\.retries has no description"):
            rows(WithLoose)


class TestRender:
    def test_blocks_are_filled_and_prose_kept(self) -> None:
        """Every block gets its section's table; headings and prose are unchanged; references follow headings."""
        page = render(PAGE, Tiny)
        assert page.startswith("# Tiny\n\nProse before.\n\n## 2. Top level\n\n<!-- generated: top-level -->\n")
        assert "\nold\n" not in page
        assert "| `limits` | see §2.2 | The limits. |" in page
        assert "| `hooks` | see below | Commands at fixed moments. |" in page
        assert "Hooks, explained by hand:\n\n<!-- generated: repos.hooks -->\n" + table(
            [Row("before", "none", "Before the run.")]
        ) + "\n<!-- /generated -->" in page
        assert page.endswith("Prose after.\n")

    def test_rendering_twice_changes_nothing(self) -> None:
        """A regenerated page is stable, so --check passes right after a rewrite."""
        once = render(PAGE, Tiny)
        assert render(once, Tiny) == once
        assert stale_sections(once, Tiny) == []

    def test_stale_sections_are_listed_in_page_order(self) -> None:
        """Only the blocks whose table differs are named."""
        page = render(PAGE, Tiny)
        edited = page.replace("| `name` | required |", "| `name` | none |").replace("`false`", "`true`")
        assert stale_sections(edited, Tiny) == ["top-level", "repos"]

    @pytest.mark.parametrize(
        ("page", "message"),
        [
            pytest.param(
                PAGE.replace("<!-- generated: limits -->\n<!-- /generated -->\n", ""),
                r"tiny\.md: config section limits has no block <!-- generated: limits -->",
                id="missing-block",
            ),
            pytest.param(
                PAGE + "<!-- generated: gone -->\n<!-- /generated -->\n",
                r"tiny\.md: block <!-- generated: gone --> names no config section",
                id="unknown-block",
            ),
            pytest.param(
                PAGE + "<!-- generated: extra2 -->\n",
                r"tiny\.md: block 'extra2' is not closed",
                id="unclosed-block",
            ),
            pytest.param(
                PAGE + "<!-- generated: limits -->\n<!-- /generated -->\n",
                r"tiny\.md:\d+: a second block for 'limits'",
                id="duplicate-block",
            ),
        ],
    )
    def test_a_page_that_does_not_match_the_models_is_one_line_naming_the_block(self, page: str, message: str) -> None:
        """Missing, unknown, unclosed and repeated blocks are refused with the file and the section."""
        with pytest.raises(ConfigDocError, match=message):
            render(page, Tiny, where="tiny.md")


class TestRealConfig:
    def test_every_key_of_agentos_config_has_a_description(self) -> None:
        """The real models render: no key lacks a description, and no shown default names a missing key."""
        from agentos.config import Config
        from agentos.configdoc import SHOWN_DEFAULTS

        sections = rows(Config, shown_defaults=SHOWN_DEFAULTS)
        assert {"top-level", "repos", "repos.hooks", "agents", "loops", "status_page"} <= set(sections)
        assert next(r for r in sections["agents"] if r.key == "prompt_via").default == "`stdin`"
