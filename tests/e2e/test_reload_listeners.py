"""SIGHUP applies listeners: added ones are bound and serve, removed ones are
closed (new connections refused by the kernel, live sessions finish), moved
ones follow their address; metrics_listen moves too; a new address that
cannot be bound refuses the whole reload; what needs a restart is logged
(event=reload_ignored key=...)."""

import re
import signal

import harness
from harness import Client, ProxyTestCase
from ops_harness import http_get, refused, reuseport_holder

MSG = b"Subject: reload\r\n\r\nthrough a listener a reload changed\r\n"


class ReloadListenersTest(ProxyTestCase):

    def reload(self, p, cfg, done=r"event=reloaded|event=reload_failed"):
        n = len(p.log())
        p.write(cfg)
        p.signal(signal.SIGHUP)
        self.assertTrue(harness.wait_until(
            lambda: re.search(done, p.log()[n:]), 5), "no reload outcome logged")
        return p.log()[n:]

    def deliver(self, port, backend, n):
        c = Client(port)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting().code, 220)
        self.assertEqual(c.ehlo().code, 250)
        replies = c.send_message("a@x.test", ["b@y.test"], MSG)
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250], replies)
        self.assertEqual(c.cmd("QUIT").code, 221)
        self.assertTrue(backend.wait_messages(n), "message %d not delivered" % n)

    def test_sighup_adds_listener(self):
        b = self.backend()
        l1 = harness.inbound_listener(b.port, name="mx")
        p = self.proxy(harness.base_config([l1]))
        l2 = harness.inbound_listener(b.port, name="mx2")
        port2 = harness.listen_port_of(l2)
        self.assertFalse(harness.is_listening(port2))
        log = self.reload(p, harness.base_config([l1, l2]))
        self.assertIn("event=reloaded", log)
        self.assertRegex(log, r"listener=mx2 event=listener_added listen=127\.0\.0\.1:%d" % port2)
        self.assertTrue(harness.wait_until(lambda: harness.is_listening(port2), 3),
                        "added listener not bound")
        self.deliver(port2, b, 1)
        kv = p.wait_session_end()
        self.assertEqual(kv["listener"], "mx2", kv["_line"])
        # The kept listener still serves.
        self.deliver(harness.listen_port_of(l1), b, 2)

    def test_sighup_removes_listener_live_session_finishes(self):
        b = self.backend()
        l1 = harness.inbound_listener(b.port, name="mx")
        l2 = harness.inbound_listener(b.port, name="gone")
        port2 = harness.listen_port_of(l2)
        p = self.proxy(harness.base_config([l1, l2]))
        live = Client(port2)
        self.addCleanup(live.close)
        self.assertEqual(live.greeting().code, 220)
        self.assertEqual(live.ehlo().code, 250)
        log = self.reload(p, harness.base_config([l1]))
        self.assertIn("event=reloaded", log)
        self.assertIn("listener=gone event=listener_removed", log)
        self.assertTrue(harness.wait_until(lambda: not harness.is_listening(port2), 3),
                        "removed listener still bound")
        self.assertTrue(refused(port2), "connection to a removed listener not refused")
        # The session it accepted before carries on to the end.
        replies = live.send_message("a@x.test", ["b@y.test"], MSG)
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250], replies)
        self.assertEqual(live.cmd("QUIT").code, 221)
        self.assertTrue(b.wait_messages(1))
        kv = p.wait_session_end()
        self.assertEqual((kv["listener"], kv["end"]), ("gone", "quit"), kv["_line"])
        self.deliver(harness.listen_port_of(l1), b, 2)

    def test_sighup_moves_listener(self):
        b = self.backend()
        l1 = harness.inbound_listener(b.port, name="mx")
        old = harness.listen_port_of(l1)
        p = self.proxy(harness.base_config([l1]))
        moved = dict(l1, listen="127.0.0.1:%d" % harness.free_port())
        new = harness.listen_port_of(moved)
        log = self.reload(p, harness.base_config([moved]))
        self.assertRegex(log, r"listener=mx event=listener_moved listen=127\.0\.0\.1:%d "
                              r"was=127\.0\.0\.1:%d" % (new, old))
        self.assertTrue(harness.wait_until(
            lambda: harness.is_listening(new) and not harness.is_listening(old), 3),
            "listener did not move")
        self.assertTrue(refused(old), "old address still accepts")
        self.deliver(new, b, 1)
        # Moving back works too: the address was really let go.
        log = self.reload(p, harness.base_config([l1]))
        self.assertIn("event=reloaded", log)
        self.assertTrue(harness.wait_until(lambda: harness.is_listening(old), 3))
        self.deliver(old, b, 2)

    def test_sighup_unbindable_address_refuses_whole_reload(self):
        b1 = self.backend(name="b1", greeting=b"220 one.test ESMTP\r\n")
        b2 = self.backend(name="b2", greeting=b"220 two.test ESMTP\r\n")
        l1 = harness.inbound_listener(b1.port, name="mx")
        p = self.proxy(harness.base_config([l1]))
        # Somebody else holds the new address, with SO_REUSEPORT as a second
        # instance of the proxy would.
        taken = reuseport_holder(self)
        l2 = harness.inbound_listener(b2.port, name="new", listen_port=taken)
        log = self.reload(p, harness.base_config([dict(l1, backend=b2.addr), l2]))
        self.assertIn("event=reload_failed", log)
        self.assertIn("127.0.0.1:%d" % taken, log)
        self.assertNotIn("event=reloaded", log)
        # The old configuration stays: mx still talks to b1.
        c = Client(harness.listen_port_of(l1))
        self.addCleanup(c.close)
        self.assertEqual(c.greeting().raw, b"220 one.test ESMTP\r\n")

    def test_sighup_moves_metrics_listen(self):
        b = self.backend()
        m1, m2 = harness.free_port(), harness.free_port()
        l1 = harness.inbound_listener(b.port)
        p = self.proxy(harness.base_config([l1], metrics_listen="127.0.0.1:%d" % m1))
        self.assertTrue(harness.wait_until(lambda: harness.is_listening(m1), 3))
        log = self.reload(p, harness.base_config([l1], metrics_listen="127.0.0.1:%d" % m2))
        self.assertIn("event=reloaded", log)
        self.assertTrue(harness.wait_until(lambda: harness.is_listening(m2), 3))
        self.assertEqual(http_get(m2, "/healthz"), (200, "ok\n"))
        self.assertTrue(harness.wait_until(lambda: refused(m1), 3), "old metrics address open")
        # Removing it turns the endpoint off.
        log = self.reload(p, harness.base_config([l1]))
        self.assertIn("event=reloaded", log)
        self.assertTrue(harness.wait_until(lambda: refused(m2), 3), "metrics still served")

    def test_sighup_names_what_needs_a_restart(self):
        b = self.backend()
        l1 = harness.inbound_listener(b.port)
        p = self.proxy(harness.base_config([l1], workers=1))
        log = self.reload(p, harness.base_config([l1], workers=2, log_format="json"))
        self.assertRegex(log, r'event=reload_ignored key=workers .*msg="needs a restart"')
        self.assertRegex(log, r'key=log_format')
        self.assertTrue(p.alive())


class AddressInUseTest(ProxyTestCase):
    """A second holder of a listen address is an error at start (exit 3,
    naming it), even when it set SO_REUSEPORT as the proxy's own workers do."""

    def run_second(self, cfg):
        p = harness.Proxy(cfg, name=self.id())
        proc = harness.subprocess.Popen([harness.proxy_binary(), "-c", p.config_path],
                                        stdout=harness.subprocess.PIPE,
                                        stderr=harness.subprocess.PIPE)
        try:
            _, err = proc.communicate(timeout=10)
        except harness.subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.fail("second proxy kept running on an address in use")
        return proc.returncode, err.decode()

    def test_second_instance_exits_3(self):
        b = self.backend()
        l1 = harness.inbound_listener(b.port)
        self.proxy(harness.base_config([l1]))
        rc, err = self.run_second(harness.base_config([l1]))
        self.assertEqual(rc, 3, err)
        self.assertIn("127.0.0.1:%d" % harness.listen_port_of(l1), err)
        self.assertIn("address already in use", err)
        # The first one is unharmed and gets every connection.
        for _ in range(4):
            c = Client(harness.listen_port_of(l1))
            self.assertEqual(c.greeting().code, 220)
            c.close()

    def test_reuseport_holder_exits_3(self):
        port = reuseport_holder(self)
        l1 = harness.inbound_listener(harness.free_port(), listen_port=port, name="mx")
        rc, err = self.run_second(harness.base_config([l1]))
        self.assertEqual(rc, 3, err)
        self.assertIn("listener mx", err)
        self.assertIn("127.0.0.1:%d" % port, err)


if __name__ == "__main__":
    harness.run_tests()
