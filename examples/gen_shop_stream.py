#!/usr/bin/env python3
"""Generates examples/shop-cluster.watch.json: a recorded-style watch stream of a small shop cluster.

Output format: what `kubectl get pods -A --watch --output-watch-events -o json` prints (one
pretty-printed watch event after another), with Pods shaped as a real API server writes them
(managedFields, last-applied annotation, defaulted fields, resourceVersions).

What happens in it (the records a correct agent reports are listed in README.md and asserted by
tests/replay.rs):
  1. shop/checkout (Deployment) crash-loops: exit 2 four times, the last observation jumping by 2;
  2. shop/cart (Deployment) is OOMKilled (exit 137, reason OOMKilled);
  3. batch/nightly-report (Job, restartPolicy OnFailure) fails once (exit 1) then completes;
  4. shop/frontend has a native sidecar (init container with restartPolicy Always) `envoy`,
     stopped by SIGTERM (exit 143);
  5. the watch is restarted: every pod comes again as ADDED, unchanged (a relist: no new restarts);
  6. shop/db-0 (StatefulSet) is deleted and recreated under the same name with a new uid, and the
     new pod's container is killed with exit 137 without OOMKilled (a liveness kill, not an OOM);
  7. noise that must stay silent: readiness flips, a scale-down deletion, a finished Job pod;
  8. shop/search is rolled out with an image tag that does not exist: ErrImagePull, ImagePullBackOff,
     ErrImagePull again (one start failure);
  9. shop/payments cannot start for a missing ConfigMap key (CreateContainerConfigError), then the
     key is created and it starts (a start failure, and its end);
 10. batch/db-migrate (Job, restartPolicy Never) exits 3 (a failure: it will not be restarted);
 11. shop/cache is evicted by the kubelet under memory pressure (an eviction; its killed container
     is not a failure of its own).

Regenerate: python3 examples/gen_shop_stream.py > examples/shop-cluster.watch.json
"""
import copy
import json
import sys
from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone.utc)
rv = [1000]


def ts(sec):
    return (T0 + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_rv():
    rv[0] += 7
    return str(rv[0])


def uid(n):
    return f"{n:08x}-5e1f-4c2a-9b7d-{n * 7919:012x}"


def pod(ns, name, n, containers, owner=None, init=(), labels=None, node="node-a", restart_policy="Always"):
    labels = dict(labels or {})
    meta = {
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": labels, "name": name, "namespace": ns},
                 "spec": {"containers": [{"name": c, "image": img} for c, img in containers]}}) + "\n"
        },
        "creationTimestamp": ts(0),
        "labels": labels,
        "managedFields": [
            {"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kube-controller-manager",
             "operation": "Update", "time": ts(0),
             "fieldsV1": {"f:metadata": {"f:labels": {".": {}, **{f"f:{k}": {} for k in labels}}},
                          "f:spec": {"f:containers": {f'k:{{"name":"{c}"}}': {".": {}, "f:image": {}, "f:name": {},
                                                                              "f:resources": {}} for c, _ in containers}}}},
            {"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kubelet", "operation": "Update",
             "subresource": "status", "time": ts(1),
             "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:phase": {}, "f:podIP": {}}}},
        ],
        "name": name,
        "namespace": ns,
        "resourceVersion": next_rv(),
        "uid": uid(n),
    }
    if owner:
        kind, oname = owner
        meta["ownerReferences"] = [{"apiVersion": "batch/v1" if kind == "Job" else "apps/v1", "blockOwnerDeletion": True,
                                    "controller": True, "kind": kind, "name": oname, "uid": uid(n + 500)}]
    spec = {
        "containers": [{"image": img, "imagePullPolicy": "IfNotPresent", "name": c,
                        "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
                       for c, img in containers],
        "dnsPolicy": "ClusterFirst", "enableServiceLinks": True, "nodeName": node,
        "preemptionPolicy": "PreemptLowerPriority", "priority": 0, "restartPolicy": restart_policy,
        "schedulerName": "default-scheduler", "securityContext": {}, "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
        "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists",
                         "tolerationSeconds": 300}],
    }
    if init:
        spec["initContainers"] = []
        for c, img, always in init:
            ic = {"image": img, "imagePullPolicy": "IfNotPresent", "name": c, "resources": {},
                  "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
            if always:
                ic["restartPolicy"] = "Always"
            spec["initContainers"].append(ic)
    status = {"phase": "Pending", "qosClass": "Burstable"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def cstatus(name, image, restarts=0, last=None, waiting=None, started=5, ready=True, n=0):
    s = {"containerID": f"containerd://{(name + str(restarts) + 'f' * 64)[:64]}", "image": image,
         "imageID": f"{image.split(':')[0]}@sha256:{(name * 8)[:8]}{'0' * 56}", "lastState": {}, "name": name,
         "ready": ready and waiting is None, "restartCount": restarts, "started": waiting is None}
    if waiting:
        s["state"] = {"waiting": {"message": f"back-off {waiting} restarting failed container={name}",
                                  "reason": "CrashLoopBackOff"}}
    else:
        s["state"] = {"running": {"startedAt": ts(started)}}
    if last:
        reason, code, start, end, extra = last
        term = {"containerID": f"containerd://{(name + str(restarts - 1) + 'e' * 64)[:64]}", "exitCode": code,
                "finishedAt": ts(end), "reason": reason, "startedAt": ts(start)}
        term.update(extra)
        s["lastState"] = {"terminated": term}
    return s


def running(p, statuses, init_statuses=None, ready=True, ip="10.244.0.10"):
    p = copy.deepcopy(p)
    p["metadata"]["resourceVersion"] = next_rv()
    st = p["status"]
    st.update({"phase": "Running", "hostIP": "172.18.0.2", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": ts(1),
               "conditions": [{"lastProbeTime": None, "lastTransitionTime": ts(2), "status": "True" if ready else "False",
                               "type": t} for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
               "containerStatuses": statuses})
    if init_statuses is not None:
        st["initContainerStatuses"] = init_statuses
    return p


events = []


def emit(kind, obj):
    events.append({"type": kind, "object": copy.deepcopy(obj)})


CHK = "registry.example.com/shop/checkout:2.4.1"
CART = "registry.example.com/shop/cart:1.9.0"
FE = "registry.example.com/shop/frontend:3.0.2"
ENVOY = "envoyproxy/envoy:v1.31.0"
DB = "postgres:16.4"
REPORT = "registry.example.com/batch/report:0.7.0"

checkout = pod("shop", "checkout-6c9d7f5b8-q2x7m", 1, [("checkout", CHK)], ("ReplicaSet", "checkout-6c9d7f5b8"),
               labels={"app.kubernetes.io/name": "checkout", "app.kubernetes.io/part-of": "shop", "pod-template-hash": "6c9d7f5b8"})
cart = pod("shop", "cart-7f8b9c6d4-m4k2p", 2, [("cart", CART)], ("ReplicaSet", "cart-7f8b9c6d4"),
           labels={"app.kubernetes.io/name": "cart", "pod-template-hash": "7f8b9c6d4"})
cart_extra = pod("shop", "cart-7f8b9c6d4-z9w5t", 3, [("cart", CART)], ("ReplicaSet", "cart-7f8b9c6d4"),
                 labels={"app.kubernetes.io/name": "cart", "pod-template-hash": "7f8b9c6d4"}, node="node-b")
frontend = pod("shop", "frontend-5d4c8b7a9-h8j3n", 4, [("frontend", FE)], ("ReplicaSet", "frontend-5d4c8b7a9"),
               init=[("envoy", ENVOY, True)],
               labels={"app.kubernetes.io/instance": "storefront", "app.kubernetes.io/name": "frontend",
                       "pod-template-hash": "5d4c8b7a9"})
db = pod("shop", "db-0", 5, [("postgres", DB)], ("StatefulSet", "db"),
         labels={"app.kubernetes.io/name": "db", "statefulset.kubernetes.io/pod-name": "db-0"}, node="node-b")
report = pod("batch", "nightly-report-28871520-7xk4d", 6, [("report", REPORT)], ("Job", "nightly-report-28871520"),
             init=[("fetch-config", "busybox:1.36", False)], labels={"job-name": "nightly-report-28871520"},
             restart_policy="OnFailure")

# Pods appear (baseline: no restarts yet).
for p in (checkout, cart, cart_extra, frontend, db, report):
    emit("ADDED", p)
checkout = running(checkout, [cstatus("checkout", CHK)])
cart = running(cart, [cstatus("cart", CART)])
cart_extra = running(cart_extra, [cstatus("cart", CART)], ip="10.244.1.4")
frontend = running(frontend, [cstatus("frontend", FE)], [cstatus("envoy", ENVOY)])
db = running(db, [cstatus("postgres", DB)], ip="10.244.1.7")
report = running(report, [cstatus("report", REPORT)],
                 [cstatus("fetch-config", "busybox:1.36", ready=False) | {"state": {"terminated": {
                     "exitCode": 0, "reason": "Completed", "startedAt": ts(2), "finishedAt": ts(4)}}}])
for p in (checkout, cart, cart_extra, frontend, db, report):
    emit("MODIFIED", p)

# 1. checkout crash-loops (exit 2), CrashLoopBackOff between restarts.
bad_cfg = {"message": "config: missing required key PAYMENT_URL"}
checkout = running(checkout, [cstatus("checkout", CHK, 1, ("Error", 2, 5, 60, bad_cfg), waiting="10s")], ready=False)
emit("MODIFIED", checkout)
checkout = running(checkout, [cstatus("checkout", CHK, 2, ("Error", 2, 71, 75, bad_cfg), waiting="20s")], ready=False)
emit("MODIFIED", checkout)
# noise: readiness flips on cart, no restart
cart = running(cart, [cstatus("cart", CART)], ready=False)
emit("MODIFIED", cart)
cart = running(cart, [cstatus("cart", CART)], ready=True)
emit("MODIFIED", cart)

# 2. cart is OOMKilled.
cart = running(cart, [cstatus("cart", CART, 1, ("OOMKilled", 137, 5, 130, {}), started=131)])
emit("MODIFIED", cart)

# 3. the Job's report container fails once, then completes.
report = running(report, [cstatus("report", REPORT, 1, ("Error", 1, 5, 140, {"message": "connection refused: warehouse:5432"}),
                                  started=141)], report["status"]["initContainerStatuses"])
emit("MODIFIED", report)

# 4. the frontend's native sidecar envoy is stopped by SIGTERM.
frontend = running(frontend, [cstatus("frontend", FE)],
                   [cstatus("envoy", ENVOY, 1, ("Error", 143, 5, 150, {"signal": 15}), started=151)])
emit("MODIFIED", frontend)

# 5. the watch is restarted: every current pod comes again as ADDED, unchanged.
for p in (checkout, cart, cart_extra, frontend, db, report):
    emit("ADDED", p)

# checkout goes on crash-looping; the next observation jumps from 2 to 4 (one restart missed).
checkout = running(checkout, [cstatus("checkout", CHK, 4, ("Error", 2, 190, 195, bad_cfg), waiting="1m20s")], ready=False)
emit("MODIFIED", checkout)

# noise: scale-down deletes the extra cart pod (no restart), the Job finishes.
cart_extra["metadata"]["deletionTimestamp"] = ts(200)
emit("MODIFIED", cart_extra)
emit("DELETED", cart_extra)
report = copy.deepcopy(report)
report["status"]["phase"] = "Succeeded"
report["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 0, "reason": "Completed",
                                                                      "startedAt": ts(141), "finishedAt": ts(210)}}
report["metadata"]["resourceVersion"] = next_rv()
emit("MODIFIED", report)

# 6. db-0 is deleted and recreated with a new uid; the new pod is killed with 137 (liveness, not OOM).
emit("DELETED", db)
db2 = pod("shop", "db-0", 7, [("postgres", DB)], ("StatefulSet", "db"),
          labels={"app.kubernetes.io/name": "db", "statefulset.kubernetes.io/pod-name": "db-0"}, node="node-b")
db2["metadata"]["ownerReferences"][0]["uid"] = uid(505)
emit("ADDED", db2)
db2 = running(db2, [cstatus("postgres", DB, started=230)], ip="10.244.1.9")
emit("MODIFIED", db2)
db2 = running(db2, [cstatus("postgres", DB, 1, ("Error", 137, 230, 300, {}), started=301)], ip="10.244.1.9")
emit("MODIFIED", db2)

# 8. shop/search: a tag that does not exist. The pod never starts.
SEARCH = "registry.example.com/shop/search:3.1.0-typo"
search = pod("shop", "search-7b5d9c4f6-k8r2v", 8, [("search", SEARCH)], ("ReplicaSet", "search-7b5d9c4f6"),
             labels={"app.kubernetes.io/name": "search", "pod-template-hash": "7b5d9c4f6"})
emit("ADDED", search)


def written(p, sec):
    """Dates the kubelet's last status write (its managedFields entry), as the API server does."""
    p["metadata"]["managedFields"][1]["time"] = ts(sec)
    return p


def waiting(p, name, image, reason, message, at):
    p = written(copy.deepcopy(p), at)
    p["metadata"]["resourceVersion"] = next_rv()
    p["status"].update({"phase": "Pending", "hostIP": "172.18.0.2", "startTime": ts(1),
                        "containerStatuses": [{"image": image, "imageID": "", "lastState": {}, "name": name,
                                               "ready": False, "restartCount": 0, "started": False,
                                               "state": {"waiting": {"reason": reason, "message": message}}}]})
    return p


pull = f'failed to pull and unpack image "{SEARCH}": not found'
for reason, message, at in (("ErrImagePull", pull, 312), ("ImagePullBackOff", f'Back-off pulling image "{SEARCH}"', 313),
                            ("ErrImagePull", pull, 330)):
    search = waiting(search, "search", SEARCH, reason, message, at)
    emit("MODIFIED", search)

# 9. shop/payments: a missing ConfigMap key, then fixed.
PAY = "registry.example.com/shop/payments:5.2.0"
payments = pod("shop", "payments-84f6d7c9b-w6n4t", 9, [("payments", PAY)], ("ReplicaSet", "payments-84f6d7c9b"),
               labels={"app.kubernetes.io/name": "payments", "pod-template-hash": "84f6d7c9b"})
emit("ADDED", payments)
payments = waiting(payments, "payments", PAY, "CreateContainerConfigError",
                   "couldn't find key STRIPE_URL in ConfigMap shop/payments-config", 322)
emit("MODIFIED", payments)
payments = written(running(payments, [cstatus("payments", PAY, started=340)], ip="10.244.0.31"), 340)
emit("MODIFIED", payments)

# 10. batch/db-migrate: a Job pod with restartPolicy Never exits 3.
MIGRATE = "registry.example.com/batch/db-migrate:2.0.0"
migrate = pod("batch", "db-migrate-5n2xq", 10, [("migrate", MIGRATE)], ("Job", "db-migrate"),
              labels={"job-name": "db-migrate"}, restart_policy="Never")
emit("ADDED", migrate)
migrate = running(migrate, [cstatus("migrate", MIGRATE, started=350)], ip="10.244.0.32")
emit("MODIFIED", migrate)
migrate = copy.deepcopy(migrate)
migrate["metadata"]["resourceVersion"] = next_rv()
migrate["status"]["phase"] = "Failed"
migrate["status"]["containerStatuses"][0].update({"ready": False, "started": False, "state": {"terminated": {
    "containerID": migrate["status"]["containerStatuses"][0]["containerID"], "exitCode": 3, "reason": "Error",
    "message": "migration 0042_add_index failed: relation \"orders\" does not exist",
    "startedAt": ts(350), "finishedAt": ts(362)}}})
emit("MODIFIED", migrate)

# 11. shop/cache: evicted by the kubelet under memory pressure.
CACHE = "redis:7.4"
cache = pod("shop", "cache-6f9b8d7c5-p3m8x", 11, [("redis", CACHE)], ("ReplicaSet", "cache-6f9b8d7c5"),
            labels={"app.kubernetes.io/name": "cache", "pod-template-hash": "6f9b8d7c5"}, node="node-b")
emit("ADDED", cache)
cache = running(cache, [cstatus("redis", CACHE, started=360)], ip="10.244.1.12")
emit("MODIFIED", cache)
cache = copy.deepcopy(cache)
cache["metadata"]["resourceVersion"] = next_rv()
evict_msg = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 84Mi. Container redis was using 1.9Gi, request is 512Mi."
cache["status"].update({"phase": "Failed", "reason": "Evicted", "message": evict_msg})
cache["status"]["conditions"].append({"lastProbeTime": None, "lastTransitionTime": ts(380), "message": evict_msg,
                                      "reason": "TerminationByKubelet", "status": "True", "type": "DisruptionTarget"})
cache["status"]["containerStatuses"][0].update({"ready": False, "started": False, "state": {"terminated": {
    "exitCode": 137, "reason": "Error", "startedAt": ts(360), "finishedAt": ts(381)}}})
emit("MODIFIED", cache)

# A bookmark, as a watch with allowWatchBookmarks sends.
events.append({"type": "BOOKMARK", "object": {"apiVersion": "v1", "kind": "Pod",
                                              "metadata": {"resourceVersion": next_rv()}}})

for e in events:
    json.dump(e, sys.stdout, indent=4, sort_keys=True)
    sys.stdout.write("\n")
