"""Pushing a finished run folder to the Hub through `huggingface_hub.HfApi`: one repo, one commit, the card refreshed
first, transient errors retried, and a failure that leaves the folder as it was and says how to retry."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from hf_transfer.core.folders import (
    ADAPTER_CONFIG,
    CARD_DATA_FILE,
    check_writable,
    is_adapter_folder,
    search_folder_hint,
    trainer_checkpoint_state,
    weight_files,
)
from hf_transfer.core.run_records import is_hub_id
from hf_transfer.errors import ConfigError, HfTransferError, without_userinfo
from hf_transfer.outputs.card_rebuild import folder_card_data
from hf_transfer.outputs.cards import write_model_card
from hf_transfer.outputs.published import publishable
from hf_transfer.outputs.push_scope import held_back, replaced_files
from hf_transfer.outputs.readme import check_readme_header

logger = logging.getLogger(__name__)

# huggingface_hub retries with backoff (`http_backoff`) inside a push only for the preupload request and LFS transfers.
# `create_repo`, `create_branch` and the commit POST of `upload_folder` (sent with retry_on_error=False) go out once on
# its plain session, so those calls are retried here as a whole, on the failures `http_backoff` treats as transient.
RETRIES = 4  # tries in all, for transient errors (5xx, 408, 429, connection errors)
RETRY_BASE_SECONDS = 2.0  # waits 2, 4, 8 s between tries
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class HubUnreachable(HfTransferError):
    """Offline mode or no network: nothing was pushed, the folder is ready to push later."""


@dataclass
class PushTarget:
    """Where a run goes on the Hub; no token in it, so it may be logged or saved."""

    repo_id: str
    private: bool | None = None
    revision: str | None = None
    private_option: str = "--private"  # how the command that pushes asks for it (train: hub_private_repo)
    again: str = ""  # the push command's options that change what goes up, which its retry command repeats

    def retry_command(self, folder: str | Path) -> str:
        command = f"hf-transfer push {shlex.quote(str(folder))} --hub_model_id {shlex.quote(self.repo_id)}"
        command += " --private" * bool(self.private)
        if self.revision:
            command += f" --revision {shlex.quote(self.revision)}"
        return command + self.again


def endpoint() -> str:
    """`HF_ENDPOINT` read now (huggingface_hub reads it once, at import), else huggingface_hub's endpoint."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def check_repo_id(repo_id: str | None) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not repo_id or not str(repo_id).strip():
        raise ConfigError("hub_model_id is required to push: a Hub repo id such as `your-name/model-name`.")
    repo_id = str(repo_id).strip()
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        reason = " ".join(str(err).split())
        raise ConfigError(f"hub_model_id {repo_id!r} is not a valid Hub repo id ({reason}).") from None
    if repo_id.count("/") > 1 or Path(repo_id).is_absolute():
        raise ConfigError(f"hub_model_id {repo_id!r} is not a valid Hub repo id; expected `namespace/name` or `name`.")
    return repo_id


def resolve_token() -> str:
    """The token from `HF_TOKEN` or the login cache (`hf auth login`); never from a config file or a flag."""
    from huggingface_hub import get_token

    if not (token := get_token()):
        raise ConfigError(
            "pushing to the Hub needs a token with write access: set HF_TOKEN or run `hf auth login` "
            "(tokens are never read from configs or flags)."
        )
    return token


# What git refuses in a branch name (`git check-ref-format`): the Hub would create the repo, then fail on the branch.
_BAD_BRANCH = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^[-/.]|[/.]$|\.lock$")


def check_revision(revision: str | None, name: str = "revision") -> str | None:
    """A branch name git accepts, or None (main)."""
    if revision is None:
        return None
    if not str(revision).strip():  # `--revision "$BRANCH"` with BRANCH unset: main was pushed to, silently
        raise ConfigError(f"{name} is blank; give a branch name such as v1, or drop {name} to push to main.")
    if _BAD_BRANCH.search(str(revision)) or str(revision) == "@":
        raise ConfigError(
            f"{name} {revision!r} is not a valid branch name: git refuses spaces, '..', '~^:?*[\\', '@{{' and a "
            "leading '-', '/' or '.'; use e.g. v1 or experiment-2."
        )
    if str(revision).startswith("refs/"):  # `refs/pr/1` (a pull request) would be made a branch of that name
        raise ConfigError(f"{name} {revision!r} is a git ref, not a branch name: push makes branches; use e.g. v1.")
    return str(revision)


def check_pushable(folder: str | Path) -> None:
    """Before the repo is created: the folder holds a model (or an adapter) and a card, or what to write one from,
    and an adapter names its base as others can load it."""
    folder = Path(folder)
    check_readme_header(folder / "README.md")  # the card is merged into it before the upload
    if not (folder / "config.json").is_file() and not is_adapter_folder(folder):
        raise ConfigError(
            f"{str(folder)!r} holds no model (no config.json or adapter_config.json), so the repo would hold no "
            "model; give the output_dir of a train, distill, merge or export run." + search_folder_hint(folder)
        )
    if not weight_files(folder):
        kind = (
            "adapter weights (adapter_model.safetensors)"
            if is_adapter_folder(folder)
            else "weights (model.safetensors)"
        )
        raise ConfigError(
            f"{str(folder)!r} holds no {kind}, so the repo would hold a config no one can load; give a folder "
            "a finished run saved its model into."
        )
    ours = folder_card_data(folder) is not None  # a card of ours is rewritten for the repo; another's goes as it is
    if not (folder / "README.md").is_file() and not ours:
        checkpoint = bool(trainer_checkpoint_state(folder))  # the run's card is of the finished model, not this step
        raise ConfigError(
            f"{str(folder)!r} holds no README.md and no hf-transfer run record to write a card from, so the repo "
            "would have no model card; "
            + ("it is a Trainer checkpoint: write a README.md there saying which step of which run it is, then push."
               if checkpoint else "write a README.md there (or run `hf-transfer card` on a run folder).")
        )  # fmt: skip
    local = []  # what would publish a path of this machine (and fail to load for anyone else): said together
    if is_adapter_folder(folder):
        try:
            base = json.loads((folder / ADAPTER_CONFIG).read_bytes()).get("base_model_name_or_path")
        except (OSError, ValueError, AttributeError) as err:
            raise ConfigError(f"cannot read {folder / ADAPTER_CONFIG}: {err}") from None
        if not is_hub_id(base):
            local.append(
                f"{folder / ADAPTER_CONFIG} names the base model {base!r}, a path on this machine, so no one who "
                "downloads the adapter can load it (AutoPeftModel reads that name); set base_model_name_or_path there "
                "to the base's Hub id (e.g. sentence-transformers/all-MiniLM-L6-v2), or train with base_model_hub_id"
            )
    if not ours:
        from huggingface_hub import metadata_load

        header = metadata_load(folder / "README.md") or {}
        named, tags = header.get("base_model"), header.get("tags") or []
        named = [*(named if isinstance(named, list) else [named]), *(str(t).split(":")[-1] for t in tags
                 if str(t).startswith("base_model:"))]  # fmt: skip
        paths = [b for b in named if isinstance(b, str) and not is_hub_id(b)]
        if paths:  # PEFT's placeholder card in a checkpoint: `base_model: /home/alice/...`, and a tag naming it
            local.append(
                f"{folder / 'README.md'} names base_model {paths[0]!r}, a path on this machine, which the card would "
                "publish; set it to the base's Hub id there (and in the tags that repeat it)"
            )
    else:  # rewritten for the repo before the upload: found unwritable only then, the repo was made, and left empty
        for card in (folder / "README.md", folder / CARD_DATA_FILE):
            check_writable(card, "the card", is_file=True, todo="copy the folder somewhere writable and push the copy")
            if card.exists() and not os.access(card, os.W_OK):
                raise ConfigError(
                    f"the card {str(card)!r} cannot be written (no permission, or immutable), and a push rewrites "
                    "it for the repo; copy the folder somewhere writable and push the copy."
                )
    if local:
        raise ConfigError("; and ".join(local) + ".")


def check_no_token_argument(training_args) -> None:
    if getattr(training_args, "hub_token", None):
        raise ConfigError(
            "hub_token is not accepted: a token in a config or on the command line ends up in files and shell "
            "history. Set HF_TOKEN or run `hf auth login` instead."
        )


def plan_push(training_args) -> PushTarget | None:
    """Check a `push_to_hub` request before any compute, and take the push over from `Trainer`, which would create
    the repo when it is built, push every checkpoint and write its own card; we push once, after our card is written,
    so `push_to_hub` is switched off in the arguments `Trainer` sees."""
    check_no_token_argument(training_args)
    if not training_args.push_to_hub:
        return None
    for name in sorted({"hub_strategy", "hub_always_push"} & set(getattr(training_args, "chosen_fields", ()))):
        logger.warning(  # Trainer's push schedule: hf-transfer pushes once, the finished folder with its card
            "%s set but ignored: the finished run is pushed once, with its card; its checkpoints stay in "
            "output_dir.", name,
        )  # fmt: skip
    repo_id = check_repo_id(training_args.hub_model_id or Path(training_args.output_dir).name)
    token = None if is_offline() else resolve_token()
    revision = check_revision(training_args.hub_revision, "hub_revision")
    training_args.push_to_hub = False
    target = PushTarget(repo_id, training_args.hub_private_repo, revision, "hub_private_repo")
    if target.private and token:
        _check_not_public_yet(target, token)
    return target


def _check_not_public_yet(target: PushTarget, token: str) -> None:
    """Before training, one look: a private push onto a public repo was refused only after the run (a network error
    leaves it to the push, `_check_still_private`)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint(), token=token)
    try:  # `name` alone is the token owner's `owner/name`, as create_repo makes it
        repo_id = target.repo_id if "/" in target.repo_id else f"{api.whoami()['name']}/{target.repo_id}"
        info = api.model_info(repo_id, timeout=10)
    except (HfHubHTTPError, KeyError, *_network_errors()):
        return  # absent (it is made private), or not reachable now
    _refuse_if_public(info, repo_id, target)


def commit_message(card_data) -> str:
    """E.g. `hf-transfer: distilled 3-layer student of org/teacher, validation accuracy 0.8394`."""
    if card_data is None:
        return "hf-transfer: upload run folder"
    metric, value = card_data.headline_metric()
    scored = f", validation {metric} {value:.4f}" if metric else ""
    return f"hf-transfer: {card_data.one_line().replace('`', '')}{scored}"


def _status(err: Exception) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _network_errors() -> tuple[type[Exception], ...]:
    try:
        import httpx2 as httpx
    except ImportError:  # huggingface_hub < 2 used httpx
        import httpx
    return httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, ConnectionError


def _short(err: Exception) -> str:
    status = _status(err)
    text = " ".join(str(err).split())
    if status is not None:
        server = getattr(err, "server_message", None) or ""
        return f"HTTP {status}" + (f": {without_userinfo(' '.join(server.split()))[:160]}" if server else "")
    return f"{type(err).__name__}: {without_userinfo(text)[:160]}"


def _retried_inside(err: BaseException) -> bool:
    """Whether `err` left huggingface_hub's own backoff loop (the preupload request, LFS transfers), which has retried
    it already: tried again here, a server gone away answered 4 × 6 requests and about 20 "Retrying" lines, over
    about 100 s, before the one-line error."""
    frames = (frame for frame, _ in traceback.walk_tb(err.__traceback__))
    return any(f.f_code.co_name == "_http_backoff_base" and f.f_locals.get("nb_tries", 0) > 1 for f in frames)


def with_retries(action, what: str, target: PushTarget, folder: Path):
    """Run `action()`; retry transient failures with exponential backoff; turn the final failure into one line."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    network = _network_errors()
    retry = f"the folder is intact; retry with `{target.retry_command(folder)}`"
    for attempt in range(1, RETRIES + 1):
        try:
            return action()
        except OfflineModeIsEnabled:
            raise HubUnreachable(f"HF_HUB_OFFLINE is set, so nothing was pushed; {retry}.") from None
        except network as err:
            inner = _retried_inside(err)
            if attempt == RETRIES or inner:
                tries = "after huggingface_hub's own retries" if inner else f"after {attempt} tries"
                failure = f"could not reach {without_userinfo(endpoint())} to {what} {tries} ({_short(err)})"
                raise HubUnreachable(f"{failure}; {retry}.") from None
            failure = _short(err)
        except ValueError as err:
            if "Invalid metadata" not in str(err):  # upload_folder checks the card's YAML with the Hub first
                raise
            problem = " ".join(str(err).split())[:240]
            raise HfTransferError(f"the Hub rejected the card: {problem}; fix README.md, then {retry}.") from None
        except HfHubHTTPError as err:
            status = _status(err)
            if status in (401, 403):
                raise HfTransferError(
                    f"the Hub refused to {what} ({_short(err)}): the token (HF_TOKEN or `hf auth login`) needs write "
                    f"access to {target.repo_id!r}; {retry}."
                ) from None
            inner = _retried_inside(err)
            if status not in TRANSIENT_STATUS or attempt == RETRIES or inner:
                tries = " after huggingface_hub's own retries" if inner else f" after {attempt} tries" * (attempt > 1)
                raise HfTransferError(f"could not {what}{tries} ({_short(err)}); {retry}.") from None
            failure = _short(err)
        wait = RETRY_BASE_SECONDS * 2 ** (attempt - 1)
        logger.warning("%s failed (%s); retrying in %.0f s (try %d of %d).", what, failure, wait, attempt + 1, RETRIES)
        time.sleep(wait)


def _check_still_private(api, repo_id: str, target: PushTarget, folder: Path) -> None:
    """`create_repo(private=True, exist_ok=True)` leaves an existing repo's visibility as it is, so a push asked to be
    private would publish the weights to a public repo without a word; it stops here instead, before any upload."""
    info = with_retries(lambda: api.model_info(repo_id), f"read the visibility of {repo_id!r}", target, folder)
    _refuse_if_public(info, repo_id, target)


def _refuse_if_public(info, repo_id: str, target: PushTarget) -> None:
    if info.private is False and (option := target.private_option):
        raise ConfigError(
            f"{repo_id!r} already exists and is public, and {option} does not change an existing repo's visibility, "
            f"so nothing was pushed; make the repo private on the Hub first (Settings), or push without {option} to "
            "publish there."
        )


def push_folder(
    folder: str | Path,
    target: PushTarget,
    message: str | None = None,
    include_training_state: bool = False,
    include_data_files: bool = False,
) -> dict:
    """Create the repo (if needed), refresh the card for it, and upload the folder in one commit, its records naming
    local files by their last part (`publishable`); return its URL and the repo's full id (`owner/name`, where the
    user gave `name`). A checkpoint's training state stays out unless `include_training_state`, and files of rows
    of data unless `include_data_files`."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{str(folder)!r} is not a folder; give the output_dir of a finished run.")
    if is_offline():
        raise HubUnreachable(
            f"HF_HUB_OFFLINE is set, so nothing was pushed; {folder} is ready: push it with "
            f"`{target.retry_command(folder)}` when online."
        )
    api = HfApi(endpoint=endpoint(), token=resolve_token())
    repo_url = with_retries(
        lambda: api.create_repo(target.repo_id, private=target.private, exist_ok=True),
        f"create the repo {target.repo_id!r}",
        target,
        folder,
    )
    repo_id = repo_url.repo_id or target.repo_id
    if target.private:
        _check_still_private(api, repo_id, target, folder)
    ignore = held_back(folder, target.repo_id, include_training_state, include_data_files)
    card_data = folder_card_data(folder)
    # The card is rewritten for this repo id before the upload; a failed push puts the old files back.
    saved = {p: p.read_bytes() if p.is_file() else None for p in (folder / "README.md", folder / CARD_DATA_FILE)}
    try:
        if card_data is not None:
            write_model_card(folder, card_data, repo_id=repo_id, revision=target.revision)
        if target.revision:
            with_retries(
                lambda: api.create_branch(repo_id, branch=target.revision, exist_ok=True),
                f"create the branch {target.revision!r}",
                target,
                folder,
            )
        with publishable(folder) as upload:
            info = with_retries(
                lambda: api.upload_folder(
                    repo_id=repo_id,
                    folder_path=upload,
                    revision=target.revision,
                    commit_message=message or commit_message(card_data),
                    ignore_patterns=ignore,  # a copy: huggingface_hub appends its own to the list
                    # An earlier push's run files this folder no longer has (the user's own files stay).
                    delete_patterns=replaced_files(api.list_repo_files(repo_id, revision=target.revision)),
                ),
                f"upload {folder} to {repo_id!r}",
                target,
                folder,
            )
    except BaseException:
        for path, data in saved.items():  # one written for the push that had not been there goes
            with contextlib.suppress(OSError):  # the error to report is the push's, not this one
                path.write_bytes(data) if data is not None else path.unlink(missing_ok=True)
        raise
    pushed_to = getattr(info, "commit_url", None) or f"{api.endpoint}/{repo_id}"
    return {"pushed_to": without_userinfo(pushed_to), "repo_id": repo_id}
