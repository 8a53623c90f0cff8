//! One end-to-end body, run on each real broker Omega is proven on (#12, `docs/brokers.md`):
//! a private mosquitto and a private RabbitMQ node with its MQTT plugin (MQTT 3.1.1, persistent
//! sessions kept as durable queues, no shared subscriptions — the cloud connects with
//! `broker.mqtt_version: "3.1.1"` and subscribes plainly).
//!
//! The body: agent → broker → `omega cloud serve` → a fresh PostgreSQL database; the mirror
//! converges; the cloud is killed (-9) and the agent keeps publishing into the broker (the
//! broker acknowledges every change: `wait_broker_took_everything`); the cloud comes back and
//! the mirror converges — from the broker's queued session, or from the agent's re-send when a
//! receipt does not come (what is asserted is convergence, not which of the two carried it);
//! the agent restarts gracefully, resumes its session and converges again.

use omega_testkit::mosquitto::Mosquitto;
use omega_testkit::postgres::PostgresDb;
use omega_testkit::rabbitmq::RabbitMq;

use crate::cloud_e2e::{Setup, app_writes};

/// A real broker under test, owned (and killed on drop) by the test.
enum Broker {
    Mosquitto(Mosquitto),
    RabbitMq(RabbitMq),
}

impl Broker {
    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Broker::Mosquitto(b) => b.addr(),
            Broker::RabbitMq(b) => b.addr(),
        }
    }

    /// Whether the broker speaks MQTT 5 (and so has shared subscriptions): mosquitto does;
    /// RabbitMQ's MQTT plugin does from 3.13 only (Debian 12 ships 3.10).
    fn mqtt5(&self) -> bool {
        matches!(self, Broker::Mosquitto(_))
    }
}

fn mirror_through(broker: &Broker, prefix: &str) {
    let db = PostgresDb::fresh();
    let mut setup = Setup::with_agent_lines(prefix, Some(db.url()), broker.addr(), "");
    if !broker.mqtt5() {
        setup = setup.mqtt_311_cloud();
    }
    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 6);
    setup.converge();

    // The cloud dies; what the agent publishes meanwhile waits in the cloud's session.
    cloud.kill9();
    app_writes(&setup.source(), 6, 4);
    setup.wait_broker_took_everything();
    let cloud = setup.start_cloud();
    setup.converge();

    // The agent restarts and resumes its session; the cloud keeps running.
    agent.sigterm();
    app_writes(&setup.source(), 10, 2);
    let agent = setup.start_agent();
    setup.converge();
    agent.sigterm();
    cloud.sigterm();
}

#[test]
fn mirror_equals_source_through_mosquitto() {
    let broker = Broker::Mosquitto(Mosquitto::start());
    mirror_through(&broker, "mosq");
}

#[test]
fn mirror_equals_source_through_rabbitmq_mqtt_plugin() {
    let broker = Broker::RabbitMq(RabbitMq::start());
    mirror_through(&broker, "rmq");
}
