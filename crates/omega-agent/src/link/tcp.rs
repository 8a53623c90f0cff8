//! The `rumqttc` link (`mqtt://`, `tcp://`, `mqtts://`, `ssl://`).
//!
//! The agent's packet ids go straight into rumqttc's queue, so a PUBACK names its batch. On a
//! disconnect rumqttc's own queue is discarded: the agent re-sends after the next CONNACK.

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, QoS, Request};

use super::LinkEvent;
use crate::publish::inflight::Outgoing;
use crate::transport::{MqttSettings, TransportError, mqtt_options};

/// `rumqttc`'s client and event loop, with the subscriptions made after each CONNACK.
pub struct TcpLink {
    client: AsyncClient,
    eventloop: EventLoop,
    subscriptions: [String; 2],
    awaiting_subacks: usize,
    session_present: bool,
    connected: bool,
}

impl TcpLink {
    /// Builds the client for `settings.url`; `max_pkid` sizes rumqttc's in-flight window.
    pub fn open(
        settings: &MqttSettings,
        subscriptions: [String; 2],
        max_pkid: u16,
    ) -> Result<TcpLink, TransportError> {
        let opts = mqtt_options(settings, max_pkid)?;
        let (client, eventloop) = AsyncClient::new(opts, 256);
        Ok(TcpLink {
            client,
            eventloop,
            subscriptions,
            awaiting_subacks: 0,
            session_present: false,
            connected: false,
        })
    }

    /// Queues the publish with the agent's packet id.
    pub fn publish(&mut self, out: &Outgoing) {
        let mut p = rumqttc::Publish::from_bytes(
            out.topic.to_string(),
            QoS::AtLeastOnce,
            out.payload.clone(),
        );
        p.pkid = out.pkid;
        p.dup = out.dup;
        self.eventloop.pending.push_back(Request::Publish(p));
    }

    /// Polls rumqttc until something the agent acts on happens.
    pub async fn next(&mut self) -> LinkEvent {
        loop {
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    // Subscribe first; publishing starts once both SUBACKs are in, so the
                    // client's own packet ids for SUBSCRIBE never overlap the agent's.
                    for topic in &self.subscriptions {
                        self.client
                            .try_subscribe(topic.clone(), QoS::AtLeastOnce)
                            .ok();
                    }
                    self.awaiting_subacks = self.subscriptions.len();
                    self.session_present = ack.session_present;
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) if self.awaiting_subacks > 0 => {
                    self.awaiting_subacks -= 1;
                    if self.awaiting_subacks == 0 {
                        self.connected = true;
                        return LinkEvent::Connected {
                            session_present: self.session_present,
                        };
                    }
                }
                Ok(Event::Incoming(Incoming::PubAck(ack))) => return LinkEvent::PubAck(ack.pkid),
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    return LinkEvent::Message {
                        topic: p.topic,
                        payload: p.payload,
                    };
                }
                Ok(_) => {}
                Err(e) => {
                    self.eventloop.pending.clear();
                    let was_connected = std::mem::take(&mut self.connected);
                    return LinkEvent::Down {
                        error: e.to_string(),
                        was_connected,
                    };
                }
            }
        }
    }

    /// Drops rumqttc's connection state and queue; the next poll reconnects.
    pub fn reset(&mut self) {
        self.eventloop.clean();
        self.eventloop.pending.clear();
        self.connected = false;
    }

    /// Queues a DISCONNECT (sent only if the loop is polled again; the process is stopping).
    pub fn close(&self) {
        let _ = self.client.try_disconnect();
    }
}
