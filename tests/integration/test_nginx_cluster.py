"""Three wsbroker nodes on one Redis behind a real nginx configured from
the shipped conf/nginx-wsbroker-cluster.conf, as README's "Scaling out"
sets them up: clients that nginx spread over the nodes chat with each
other, the HTTP API of one node reaches all of them, and when a node stops its clients
reconnect through nginx to another node and resume where they were."""

import os
import signal

import pytest

from conftest import free_port
from step2util import api_publish, pubsub, wait_until
from test_cluster import collect_messages, metric, nodes, redis  # noqa: F401 (fixtures)
from test_nginx import Nginx, require_nginx, source_dir, substitute

NODES = 3


def shipped_cluster_site():
    path = os.path.join(source_dir(), "conf", "nginx-wsbroker-cluster.conf")
    if not os.path.isfile(path):
        pytest.fail("shipped nginx cluster site not found: %s" % path)
    with open(path) as f:
        return f.read()


def site_for_test(text, http_port, node_ports):
    for i, port in enumerate(node_ports):
        text = substitute(text, r"^(\s*)server 10\.0\.0\.%d:8080 " % (11 + i),
                          r"\g<1>server 127.0.0.1:%d " % port, "upstream node %d" % (i + 1))
    text = substitute(text, r"^(\s*)listen 80;", r"\g<1>listen 127.0.0.1:%d;" % http_port,
                      "listen line")
    return substitute(text, r"^\s*listen \[::\]:80;\n", "", "IPv6 listen line")


@pytest.fixture
def cluster(nodes, tmp_path):  # noqa: F811 (the imported fixture)
    require_nginx()
    started = nodes(NODES)
    http_port = free_port()
    site = site_for_test(shipped_cluster_site(), http_port, [n.port for n in started])
    nginx = Nginx(str(tmp_path / "nginx"), site, http_port, http_port).start()
    yield nginx, started
    nginx.stop()


def connections_per_node(brokers):
    return [metric(b.port, 'wsbroker_connections_open{route="/ws"}') for b in brokers]


def test_clients_on_different_nodes_chat_through_nginx(cluster):
    nginx, brokers = cluster
    clients = []
    for i in range(NODES):
        clients.append(pubsub(nginx.http_port, user="u%d" % i))
        clients[-1].subscribe("lobby")
    # least_conn: one WebSocket held on each node.
    assert connections_per_node(brokers) == [1] * NODES
    clients[0].publish("lobby", "hello from the first", id=1)
    for ws in clients:
        assert collect_messages(ws, 1, 10)[0]["data"] == "hello from the first"
    response = api_publish(brokers[1].port, "lobby", data="from the API")
    assert response.status == 202, response
    for ws in clients:
        assert collect_messages(ws, 1, 10)[0]["data"] == "from the API"
    for ws in clients:
        ws.close()


def test_clients_of_a_stopped_node_resume_on_another(cluster):
    nginx, brokers = cluster
    clients = [pubsub(nginx.http_port) for _ in range(NODES)]
    positions = [ws.subscribe("hist:feed") for ws in clients]
    victim = connections_per_node(brokers).index(1)
    lost = clients[victim]
    for i in range(3):
        assert api_publish(brokers[(victim + 1) % NODES].port, "hist:feed", data=i).status == 202
    last_seen = collect_messages(lost, 3, 10)[-1]["seq"]
    brokers[victim].proc.send_signal(signal.SIGTERM)
    brokers[victim].proc.wait(timeout=15)
    for i in range(3, 6):
        assert api_publish(brokers[(victim + 1) % NODES].port, "hist:feed", data=i).status == 202
    # The client reconnects through nginx, which skips the stopped node.
    again = pubsub(nginx.http_port)
    reply = again.subscribe("hist:feed", since=last_seen, epoch=positions[victim]["epoch"])
    assert reply["recovered"] is True, reply
    assert [m["data"] for m in collect_messages(again, 3, 10)] == [3, 4, 5]
    alive = [b for i, b in enumerate(brokers) if i != victim]
    wait_until(lambda: sum(connections_per_node(alive)) == NODES, timeout=10,
               what="the new connection on a live node")
    for i, ws in enumerate(clients):
        if i != victim:
            assert [m["data"] for m in collect_messages(ws, 6, 10)] == list(range(6))
            ws.close()
    again.close()
