#!/usr/bin/python
# Copyright: refstack-farm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# (Ansible's licence for modules; the farm_client package it drives is Apache-2.0.)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gearman_job
short_description: Submit, wait for or cancel a refstack-farm Tempest run
description:
  - Queues a Tempest run on a refstack-farm (O(state=present)), optionally waits until it
    ends and returns its summary, or cancels it (O(state=absent)).
  - Goes through the status server when O(server_url) is given (the cloud's configuration
    is kept there and fetched by the worker, so passwords do not ride the queue), else
    straight to gearmand with a self-contained payload.
  - Idempotent by O(test_id) - a test id that the farm already knows is not submitted
    again; with O(wait=true) the module waits for that run instead.
version_added: "0.1.0"
author: refstack-farm maintainers (@refstack-farm)
requirements:
  - refstack-farm-client (the C(farm_client) library) on the host that runs the module
options:
  test_id:
    description: The run's id (V([A-Za-z0-9._-]{1,64})); what makes the task idempotent.
    type: str
    required: true
  state:
    description:
      - V(present) queues the run unless the farm knows the test id already.
      - V(absent) cancels it - a queued run never starts; a running one is stopped by its
        worker. A finished or unknown run is left alone (changed=false).
    type: str
    choices: [present, absent]
    default: present
  tempest_version:
    description: The exact Tempest release to run, for example V(47.0.0). Required to submit.
    type: str
  conf:
    description:
      - The tempest.conf sections and options (the seed's conf_json), merged over the
        worker's defaults.
      - Required without O(server_url) (the worker has nowhere to fetch it from).
    type: dict
  os_cloud:
    description:
      - Take the cloud (auth URL, region, interface, TLS and the user) from clouds.yaml on
        the host that runs the module, as openstacksdk finds it (C(OS_CLIENT_CONFIG_FILE),
        C(./clouds.yaml), C(~/.config/openstack/clouds.yaml), C(/etc/openstack/clouds.yaml);
        secure.yaml merged); V(envvars) reads the C(OS_*) variables. O(conf) adds to it and
        wins over it.
    type: str
  os_cloud_account:
    description: With O(os_cloud), its user as the pre-provisioned account (member role)
      rather than Tempest's admin.
    type: bool
    default: false
  accounts:
    description:
      - Tempest's pre-provisioned accounts (the items of C(accounts.yaml) - username,
        password, project_name, user_domain_name, project_domain_name, roles, ...), used
        instead of admin credentials (C(use_dynamic_credentials = false)).
      - Through the status server they are kept there and fetched by the worker, as the
        conf is; their passwords are masked like the conf's.
    type: list
    elements: dict
  discover:
    description:
      - The worker discovers tempest.conf with python-tempestconf (locked with the Tempest
        version) from O(conf)'s C([identity] uri_v3) and admin credentials, or from the
        first of O(accounts); the rest of O(conf) overrides what it finds.
      - An empty dict discovers with the defaults.
    type: dict
    suboptions:
      network_id:
        description: The external network (id or name) instead of the one it finds.
        type: str
      flavor_min_mem:
        description: The smallest RAM (MB) of the flavors it picks.
        type: int
      flavor_min_disk:
        description: The smallest disk (GB) of the flavors it picks.
        type: int
  regex:
    description: Select tests by regular expression.
    type: str
  include:
    description: Regular expressions of tests to run.
    type: list
    elements: str
  exclude:
    description: Regular expressions of tests to skip.
    type: list
    elements: str
  test_list:
    description:
      - An explicit list of tests, refstack-client's format (V(module.Class.test_method),
        optionally with V([id-<uuid>,...]); a test's older names as extra entries with its
        id). Matched to the worker's Tempest by name, alias and idempotent id.
      - Not with O(regex), O(include), O(exclude) or O(guideline).
    type: list
    elements: str
  guideline:
    description:
      - Run an interop guideline's tests and return its compliance report. The list comes
        from the RefStack API at O(guideline.refstack_url), as refstack-client asks for it,
        or from the guideline file O(guideline.file).
    type: dict
    suboptions:
      version:
        description: The guideline, for example V(2020.06) (an add-on's, V(dns.2020.06)).
        type: str
        required: true
      target:
        description: V(platform), V(compute), V(object) or an add-on (V(dns),
          V(orchestration), ...).
        type: str
        default: platform
      types:
        description: The capability statuses to run.
        type: list
        elements: str
        default: [required]
      include_flagged:
        description: Run the flagged tests too (reported, never required).
        type: bool
        default: false
      refstack_url:
        description: The RefStack API that serves the guideline (for example
          V(https://refstack.openstack.org/api)).
        type: str
      file:
        description: The guideline's JSON (interop schema 2.0) as a path or an http(s) URL,
          instead of O(guideline.refstack_url).
        type: str
  dry_run:
    description: Build the environment and the configuration and list the tests, run none.
    type: bool
    default: false
  timeout_s:
    description: The run's time limit in seconds (the worker's default when unset).
    type: int
  queue_anyway:
    description: Queue even when no worker serves O(tempest_version) yet.
    type: bool
    default: false
  wait:
    description: Wait until the run ends and return its summary.
    type: bool
    default: false
  wait_timeout:
    description: How long to wait, in seconds; past it the module fails with C(timed_out=true).
    type: int
    default: 3600
  poll_interval:
    description: Seconds between looks at the run while waiting (through a status server).
    type: float
    default: 2.0
  gearman_servers:
    description: gearmand servers, V(host) or V(host:port); the first that answers takes the job.
    type: list
    elements: str
    default: [127.0.0.1:4730]
  server_url:
    description: The status server (C(farm-server serve)); unset to talk to gearmand directly.
    type: str
  token:
    description: A user token for the status server.
    type: str
  upload_url:
    description:
      - A RefStack API (for example V(https://refstack.openstack.org/api)) to send the run's
        passed tests to, as refstack-client does. Needs O(server_url).
      - With O(wait=true) the module uploads once the run ends V(passed) or V(failed),
        signed with O(upload_key); a run already uploaded there is not uploaded again.
      - Without O(wait), the status server uploads when the run ends (signed with the
        server's key, if it has one).
    type: str
  upload_key:
    description:
      - An RSA private key on the host that runs the module, registered in the RefStack
        profile (C(farm refstack-key) prints what to register); unsigned without it.
        Needs O(wait=true).
    type: path
  cpid:
    description: The cloud's id for RefStack; by default the one the worker found in the
      cloud's Keystone catalog.
    type: str
notes:
  - Check mode validates the payload and connects (the server, or gearmand and the
    registered versions) without submitting or cancelling.
  - Without O(server_url), O(wait=true) follows the run through a foreground gearman job;
    a run that another task queued is followed until it leaves the queue, and its final
    state is only known to the status server.
"""

EXAMPLES = r"""
- name: Run the identity API tests on Tempest 47.0.0 and wait for the result
  gearman_job:
    test_id: "cloud-a-{{ ansible_date_time.date }}"
    tempest_version: 47.0.0
    regex: tempest.api.identity
    conf: "{{ cloud_a_tempest_conf }}"
    server_url: https://farm.example.org/
    token: "{{ farm_token }}"
    wait: true
    wait_timeout: 7200
  register: run

- name: Queue a dry run straight to gearmand
  gearman_job:
    test_id: dry-1
    tempest_version: 47.0.0
    conf: {identity: {uri_v3: "https://keystone.example.org/v3"}}
    regex: tempest.api.identity
    dry_run: true
    gearman_servers: [gm1.example.org, gm2.example.org:4731]

- name: Run the interop tests and upload the passed ones to RefStack, signed
  gearman_job:
    test_id: cloud-a-interop-1
    tempest_version: 47.0.0
    include: "{{ interop_tests }}"
    conf: "{{ cloud_a_tempest_conf }}"
    server_url: https://farm.example.org/
    token: "{{ farm_token }}"
    wait: true
    upload_url: https://refstack.openstack.org/api
    upload_key: ~/.ssh/refstack_rsa

- name: An official run of guideline 2020.06 (platform, required tests)
  gearman_job:
    test_id: cloud-a-2020.06
    tempest_version: 47.0.0
    guideline: {version: "2020.06", refstack_url: https://refstack.openstack.org/api}
    conf: "{{ cloud_a_tempest_conf }}"
    server_url: https://farm.example.org/
    token: "{{ farm_token }}"
    wait: true
  register: official

- name: A run whose tempest.conf the worker discovers from clouds.yaml's credentials
  gearman_job:
    test_id: cloud-b-discovered-1
    tempest_version: 47.0.0
    os_cloud: cloud-b
    discover: {network_id: public}
    regex: tempest.api.identity
    server_url: https://farm.example.org/
    token: "{{ farm_token }}"
    wait: true

- name: Cancel a run
  gearman_job:
    test_id: cloud-a-2026-11-25
    state: absent
    server_url: https://farm.example.org/
    token: "{{ farm_token }}"
"""

RETURN = r"""
test_id:
  description: The run's id.
  returned: always
  type: str
  sample: cloud-a-2026-11-25
handle:
  description: gearmand's job handle (when the module submitted straight to gearmand).
  returned: when submitted without a server
  type: str
  sample: "H:gm1:42"
state:
  description:
    - The run's state when the module returned - queued, installing, running, uploading,
      passed, failed, error, cancelled, timed_out, rejected - or unknown (no server knows it).
  returned: always
  type: str
  sample: passed
summary:
  description: The run's counts and message once it ended (with O(wait=true)); C(total) is
    the tests selected, C(not_run) those that reported nothing, C(classes_failed) the
    setUpClass/tearDownClass fixtures that failed.
  returned: when waited for
  type: dict
  sample: {"passed": 138, "failed": 0, "skipped": 0, "not_run": 0, "total": 138,
           "classes_failed": 0, "message": "..."}
selection:
  description: What an explicit list or a guideline matched - listed, matched, by_name,
    by_alias, by_id, renamed (listed name, Tempest name, how), not_found (names).
  returned: when waited for a run of O(test_list) or O(guideline)
  type: dict
  sample: {"listed": 275, "matched": 273, "by_name": 270, "by_alias": 1, "by_id": 2,
           "not_found": ["tempest.api.compute.a.B.test_c", "..."]}
compliance:
  description: A guideline run's compliance report - per capability its status, passed,
    total and complete; totals per status; and C(summary), a sentence.
  returned: when waited for a run of O(guideline)
  type: dict
  sample: {"summary": "passes 19 of 275 required tests (6.9%); 7 of 78 required
           capabilities complete", "capabilities": [], "totals": {}}
timed_out:
  description: Whether O(wait_timeout) passed before the run ended.
  returned: always
  type: bool
  sample: false
message:
  description: What the module did, in a sentence.
  returned: always
  type: str
upload:
  description: The upload to RefStack (state uploaded or failed, result_id, result_url,
    signed_by, attempts), as the status server recorded it.
  returned: when O(upload_url) and O(wait=true) and the run ended passed or failed
  type: dict
  sample: {"state": "uploaded", "result_url": "https://refstack.openstack.org/#/results/1"}
"""

import time  # noqa: E402
import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

try:
    from farm_client import clouds, guidelines
    from farm_client.commands.results import upload_results
    from farm_client.config import load_client_config
    from farm_client.exceptions import FarmClientError, NoSuchTest
    from farm_client.farm import GONE
    from farm_client.farm import open_farm as farm_of
    from farm_worker.exceptions import PayloadError
    from farm_worker.protocol import FINAL_STATE_VALUES
    from farm_worker.redaction import secrets_in_accounts, secrets_in_conf
    HAS_FARM_CLIENT = True
    FARM_IMPORT_ERROR = None
except ImportError:
    HAS_FARM_CLIENT = False
    FARM_IMPORT_ERROR = traceback.format_exc()


def leaf_values(value):
    """Every scalar in `value` as Ansible's no_log masking sees it."""
    if isinstance(value, dict):
        return set().union(*(leaf_values(v) for v in value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(leaf_values(v) for v in value)) if value else set()
    return {str(value)} if value is not None else set()


def mask_only_secrets(module):
    """`conf` and `accounts` are no_log, so Ansible keeps them out of the logged
    invocation, but it would also mask every value of them (a "2", "admin", "tests")
    wherever it occurs in the result: messages, summaries, result URLs. Keep masking only
    their secrets and the token."""
    conf, accounts = module.params["conf"], module.params["accounts"]
    token = module.params["token"]
    keep = (secrets_in_conf(conf) | secrets_in_accounts(accounts)
            | ({token} if token else set()))
    module.no_log_values.difference_update(leaf_values([conf, accounts]) - keep)


def payload_of(params):
    doc = {"schema": 1, "test_id": params["test_id"],
           "tempest": {"version": params["tempest_version"]},
           "dry_run": params["dry_run"]}
    if params["conf"] is not None:
        doc["conf"] = params["conf"]
    if params["accounts"]:
        doc["accounts"] = params["accounts"]
    if params["discover"] is not None:
        doc["discover"] = {k: v for k, v in params["discover"].items() if v is not None}
    if params["os_cloud"]:
        if params["os_cloud_account"] and params["accounts"]:
            raise clouds.CloudError("accounts: not with os_cloud_account (which makes the "
                                    "cloud's user the account)")
        doc = clouds.add_cloud(doc, params["os_cloud"], as_account=params["os_cloud_account"])
    chosen = [k for k in ("test_list", "guideline") if params[k]]
    if chosen and (params["regex"] is not None or params["include"] or params["exclude"]
                   or len(chosen) > 1):
        raise guidelines.GuidelineError(f"{chosen[-1]}: not with regex, include, exclude or "
                                        "another list: a list names every test it runs",
                                        chosen[-1])
    if params["test_list"]:
        doc["tests"] = {"list": params["test_list"]}
    elif params["guideline"]:
        doc["tests"], doc["guideline"] = guideline_tests(params["guideline"])
    elif params["regex"] is not None or params["include"] or params["exclude"]:
        tests = {}
        if params["regex"] is not None:
            tests["regex"] = params["regex"]
        if params["include"]:
            tests["include"] = params["include"]
        if params["exclude"]:
            tests["exclude"] = params["exclude"]
        doc["tests"] = tests
    if params["timeout_s"] is not None:
        doc["timeout_s"] = params["timeout_s"]
    if params["cpid"] is not None:
        doc["cpid"] = params["cpid"]
    if params["upload_url"] is not None and not params["wait"]:
        doc["upload_url"] = params["upload_url"]  # the server uploads when the run ends
    return doc


def guideline_tests(g):
    """A guideline's test list and block, from its file or its RefStack API."""
    types = list(g["types"])
    if g["file"]:
        doc = guidelines.parse_guideline(guidelines.fetch(g["file"], "guideline.file"),
                                         g["file"], "guideline.file")
        selected = guidelines.select(doc, g["target"], types, g["include_flagged"], g["file"])
        return {"list": selected.lines}, selected.guideline
    if not g["refstack_url"]:
        raise guidelines.GuidelineError("guideline: needs refstack_url (the RefStack API "
                                        "that serves it) or file", "guideline.refstack_url")
    selected, lines = guidelines.from_refstack(g["refstack_url"], g["version"], g["target"],
                                               types, g["include_flagged"])
    return {"list": lines}, selected.guideline


def open_farm(params):
    flags = {"GEARMAN_SERVER": ",".join(params["gearman_servers"]),
             "FARM_SERVER_URL": params["server_url"] or "",
             "FARM_TOKEN": params["token"]}
    return farm_of(load_client_config(flags=flags, environ={}))


def known_state(farm, test_id):
    """The run's state if the farm knows it, else None."""
    try:
        snap = farm.status(test_id)
    except NoSuchTest:
        return None
    return None if snap.state == GONE else snap.state


def settle(module, farm, result, run=None, gone="unknown"):
    """Wait for the end until the module's deadline: the final state (`gone` when gearmand
    no longer has the test and nothing else knows how it ended), or timed_out with the
    state last seen."""
    test_id = module.params["test_id"]
    snap = farm.wait(test_id, max(0.0, result["_deadline"] - time.monotonic()), run,
                     poll_s=module.params["poll_interval"])
    if snap is None:
        last = farm.status(test_id).state
        result.update(timed_out=True, state=result["state"] if last == GONE else last)
        return
    if snap.state == GONE:
        result.update(state=gone)
        return
    summary = snap.summary or summary_of(snap)
    outcome = summary if snap.summary else farm.final_results(snap).get("test") or {}
    result.update(state=snap.state, summary=summary, message=f"{test_id} ran: {snap.state}",
                  selection=outcome.get("selection"), compliance=outcome.get("compliance"))
    if result["compliance"]:
        result["message"] += f"; {result['compliance']['summary']}"


def summary_of(snap):
    return {**snap.counts.to_dict(), "worker": snap.worker, "message": snap.message}


def present(module, farm, result, payload):
    p = module.params
    test_id = p["test_id"]
    state = known_state(farm, test_id)
    if state is None:
        if module.check_mode:
            if not p["queue_anyway"]:
                farm.check_registered(p["tempest_version"])
            result.update(changed=True, state="queued",
                          message=f"{test_id} would be queued (check mode)")
            return
        # with wait, a foreground job straight to gearmand: its worker reports the end
        run = farm.start(payload, p["queue_anyway"]) if p["wait"] else None
        submitted = run.submitted if run else farm.submit(payload, p["queue_anyway"])
        result.update(changed=True, handle=submitted.handle, state="queued",
                      message=f"{test_id} queued on {submitted.function}")
        if run:
            settle(module, farm, result, run)
        return
    result.update(state=state, message=f"{test_id} is already known ({state}): "
                                       "not submitted again")
    if p["wait"] and not module.check_mode:
        settle(module, farm, result)


def upload_run(module, farm, result):
    """Send the ended run to RefStack once: a run already uploaded there is left alone."""
    p = module.params
    test_id = p["test_id"]
    if result["state"] not in ("passed", "failed"):
        result["message"] += f"; not uploaded to RefStack (state {result['state']})"
        return
    done = [u for u in farm.history(test_id).get("uploads", [])
            if u["target"] == p["upload_url"] and u["state"] == "uploaded"]
    if done:
        result.update(upload=done[-1])
        return
    if module.check_mode:
        result.update(changed=True, message=result["message"] + "; would upload to RefStack")
        return
    result.update(changed=True, upload=upload_results(
        farm, test_id, p["upload_url"], key_file=p["upload_key"], cpid=p["cpid"]))
    result["message"] += f"; uploaded to RefStack: {result['upload']['result_url']}"


def absent(module, farm, result):
    test_id = module.params["test_id"]
    state = known_state(farm, test_id)
    if state is None or state in FINAL_STATE_VALUES:
        result.update(state=state or "unknown",
                      message=f"{test_id}: nothing to cancel ({state or 'unknown'})")
        return
    if module.check_mode:
        result.update(changed=True, state=state, message=f"{test_id} would be cancelled")
        return
    outcome = farm.cancel(test_id)
    result.update(changed=outcome.outcome != "nothing", state=outcome.state or state,
                  message=outcome.message)
    if module.params["wait"] and result["changed"]:
        message = result["message"]
        settle(module, farm, result, gone="cancelled")
        result.update(message=message, summary=None)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            test_id=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            tempest_version=dict(type="str"),
            conf=dict(type="dict", no_log=True),
            accounts=dict(type="list", elements="dict", no_log=True),
            discover=dict(type="dict", options=dict(
                network_id=dict(type="str"), flavor_min_mem=dict(type="int"),
                flavor_min_disk=dict(type="int"))),
            os_cloud=dict(type="str"),
            os_cloud_account=dict(type="bool", default=False),
            regex=dict(type="str"),
            include=dict(type="list", elements="str"),
            exclude=dict(type="list", elements="str"),
            test_list=dict(type="list", elements="str"),
            guideline=dict(type="dict", options=dict(
                version=dict(type="str", required=True),
                target=dict(type="str", default="platform"),
                types=dict(type="list", elements="str", default=["required"]),
                include_flagged=dict(type="bool", default=False),
                refstack_url=dict(type="str"),
                file=dict(type="str"),
            )),
            dry_run=dict(type="bool", default=False),
            timeout_s=dict(type="int"),
            queue_anyway=dict(type="bool", default=False),
            wait=dict(type="bool", default=False),
            wait_timeout=dict(type="int", default=3600),
            poll_interval=dict(type="float", default=2.0),
            gearman_servers=dict(type="list", elements="str", default=["127.0.0.1:4730"]),
            server_url=dict(type="str"),
            token=dict(type="str", no_log=True),
            upload_url=dict(type="str"),
            upload_key=dict(type="path", no_log=False),
            cpid=dict(type="str"),
        ),
        required_if=[("state", "present", ["tempest_version"])],
        required_by={"upload_url": "server_url", "upload_key": "upload_url"},
        supports_check_mode=True,
    )
    if not HAS_FARM_CLIENT:
        module.fail_json(msg=missing_required_lib("refstack-farm-client"),
                         exception=FARM_IMPORT_ERROR)
    mask_only_secrets(module)
    p = module.params
    if p["upload_key"] and not p["wait"]:
        module.fail_json(msg="upload_key needs wait=true: the module signs the upload when "
                             "the run ends (without wait, the server uploads with its key)")
    result = dict(changed=False, test_id=p["test_id"], handle=None, state="unknown",
                  summary=None, timed_out=False, message="", upload=None, selection=None,
                  compliance=None,
                  _deadline=time.monotonic() + p["wait_timeout"])
    farm = None
    try:
        farm = open_farm(p)
        if p["state"] == "present":
            payload = payload_of(p)
            # a password read from clouds.yaml is as secret as one given in conf
            module.no_log_values.update(secrets_in_conf(payload.get("conf"))
                                        | secrets_in_accounts(payload.get("accounts")))
            farm.read_payload(payload)
            present(module, farm, result, payload)
            if p["upload_url"] and p["wait"] and not result["timed_out"]:
                upload_run(module, farm, result)
        else:
            absent(module, farm, result)
    except PayloadError as exc:
        module.fail_json(msg=f"invalid job: {exc}", field=exc.field,
                         **{k: v for k, v in result.items() if not k.startswith("_")})
    except FarmClientError as exc:  # NotRegistered, Duplicate, NeedsServer, ...
        module.fail_json(msg=str(exc),
                         **{k: v for k, v in result.items() if not k.startswith("_")})
    finally:
        if farm is not None:
            farm.close()
    result.pop("_deadline")
    if result["timed_out"]:
        module.fail_json(msg=f"{p['test_id']} did not end within {p['wait_timeout']} s "
                             f"(state {result['state']})", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
