"""The portal's operators and the tenants' service requests in the store."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.store import (
    DuplicateRecordError,
    MemoryServiceRequests,
    RequestState,
    Role,
    ServiceRequest,
    SessionFilter,
    SessionOwners,
    SessionRecord,
    SqlBrowse,
    SqlOperators,
    SqlServiceRequests,
    StoreConflictError,
    UnknownRecordError,
    check_operator_name,
)
from tests.unit.web.portal import InlineClock, result_of, sql_store


class OperatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = InlineClock()
        self.store = sql_store(self.clock)
        self.addCleanup(lambda: result_of(self.store.close()))
        self.operators = SqlOperators(self.store, scrypt_n=2**4)

    def test_addAndCheck(self) -> None:
        """Only the scrypt digest is kept; it matches the password and nothing else."""
        result_of(self.operators.add("ada", Role.ADMIN, "a long password", at=5.0))
        found = result_of(self.operators.get("ada"))
        self.assertEqual((found.role, found.enabled, found.created_at), (Role.ADMIN, True, 5.0))
        self.assertTrue(found.password.matches("a long password"))
        self.assertFalse(found.password.matches("a long passwore"))
        from sqlalchemy import text

        with self.store.engine.connect() as c:
            stored = c.execute(text("SELECT password FROM operators")).scalar()
        self.assertNotIn("a long password", stored)
        self.assertIn('"token_scheme":"scrypt"', stored)
        self.assertNotIn("a long password", repr(found))

    def test_refusals(self) -> None:
        result_of(self.operators.add("ada", Role.ADMIN, "a long password", at=5.0))
        self.assertRaises(
            DuplicateRecordError,
            result_of,
            self.operators.add("ada", Role.VIEWER, "another password", at=6.0),
        )
        self.assertRaises(ValueError, self.operators.add, "ada", Role.VIEWER, "short", at=6.0)
        self.assertRaises(ValueError, check_operator_name, "bad name")
        self.assertRaises(ValueError, check_operator_name, "")
        self.assertRaises(
            UnknownRecordError, result_of, self.operators.set_role("nobody", Role.ADMIN, at=1.0)
        )

    def test_changes(self) -> None:
        result_of(self.operators.add("otto", Role.OPERATOR, "a long password", at=5.0))
        result_of(self.operators.set_role("otto", Role.VIEWER, at=6.0))
        result_of(self.operators.set_enabled("otto", False, at=7.0))
        result_of(self.operators.set_password("otto", "a new long password", at=8.0))
        found = result_of(self.operators.get("otto"))
        self.assertEqual((found.role, found.enabled, found.changed_at), (Role.VIEWER, False, 8.0))
        self.assertTrue(found.password.matches("a new long password"))
        self.assertEqual([o.name for o in result_of(self.operators.list())], ["otto"])

    def test_roles(self) -> None:
        self.assertTrue(Role.ADMIN.allows(Role.OPERATOR))
        self.assertTrue(Role.OPERATOR.allows(Role.VIEWER))
        self.assertFalse(Role.VIEWER.allows(Role.OPERATOR))
        self.assertFalse(Role.OPERATOR.allows(Role.ADMIN))


class RequestTests(SynchronousTestCase):
    """Both implementations decide a request once."""

    def _check(self, requests) -> None:  # type: ignore[no-untyped-def]
        kept = result_of(
            requests.submit(
                ServiceRequest(
                    "acme", "isd", aids=("A0000000871002",), expected_volume=7, submitted_at=1.0
                )
            )
        )
        self.assertEqual(kept.state, RequestState.PENDING)
        other = result_of(requests.submit(ServiceRequest("beta", "ram")))
        self.assertEqual(result_of(requests.count_pending()), 2)
        decided = result_of(
            requests.decide(kept.request_id, RequestState.APPROVED, by="ada", at=2.0, note="ok")
        )
        self.assertEqual((decided.state, decided.decided_by), (RequestState.APPROVED, "ada"))
        self.assertRaises(
            StoreConflictError,
            result_of,
            requests.decide(kept.request_id, RequestState.REJECTED, by="b", at=3.0),
        )
        self.assertRaises(
            UnknownRecordError,
            result_of,
            requests.decide(999, RequestState.REJECTED, by="b", at=3.0),
        )
        pending = result_of(requests.list(state=RequestState.PENDING))
        self.assertEqual([r.request_id for r in pending], [other.request_id])
        self.assertEqual(result_of(requests.get(kept.request_id)).aids, ("A0000000871002",))

    def test_sql(self) -> None:
        clock = InlineClock()
        store = sql_store(clock)
        self.addCleanup(lambda: result_of(store.close()))
        self._check(SqlServiceRequests(store))

    def test_memory(self) -> None:
        self._check(MemoryServiceRequests())


class OwnerTests(SynchronousTestCase):
    def test_batchedOwners(self) -> None:
        """Owners are written once a second, in one transaction; a filter by tenant finds them."""
        clock = InlineClock()
        store = sql_store(clock)
        self.addCleanup(lambda: result_of(store.close()))
        browse = SqlBrowse(store)
        owners = SessionOwners(browse, clock, interval=1.0)
        for n in range(3):
            result_of(store.create_session(SessionRecord(f"s{n}", "isd", "closed", 1.0 + n, 1.0)))
            owners(f"s{n}", "acme" if n else "beta")
        self.assertEqual(result_of(browse.count_sessions(SessionFilter(tenant="acme"))), 0)
        clock.advance(1.0)
        self.assertEqual(result_of(browse.count_sessions(SessionFilter(tenant="acme"))), 2)
        owners("s0", "beta")  # again: kept once
        result_of(owners.flush())
        self.assertEqual(result_of(browse.session_owner("s0")), "beta")
        self.assertEqual(clock.getDelayedCalls(), [])
