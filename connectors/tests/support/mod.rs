//! A real Mosquitto broker for a test (started through scripts/mqtt-up on
//! a free port, stopped when dropped), and a plain MQTT client to publish
//! and subscribe with.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

/// A Mosquitto broker on 127.0.0.1 for one test.
pub struct Broker {
    pub port: u16,
}

/// A port no one listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    pub fn start() -> Broker {
        let broker = Broker { port: free_port() };
        broker.up();
        broker
    }

    /// A broker that also has a listener on `port + 1` for the users of
    /// `users` (user, password) only.
    pub fn start_with_passwords(users: &[(&str, &str)]) -> Broker {
        let port = free_port();
        let broker = Broker { port };
        let file = std::env::temp_dir().join(format!("iotql-mqtt-users-{port}"));
        let lines: Vec<String> = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
        std::fs::write(&file, lines.concat()).unwrap();
        broker.run("mqtt-up", &["--passwords", file.to_str().unwrap()]);
        std::fs::remove_file(&file).unwrap();
        broker
    }

    fn run(&self, name: &str, args: &[&str]) {
        let out = Command::new(script(name))
            .args(args)
            .env("IOTQL_MQTT_PORT", self.port.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the broker (again, with its data when it was stopped with `stop_keeping_data`).
    pub fn up(&self) {
        self.run("mqtt-up", &[]);
    }

    /// Stops the broker, keeping its sessions and queued messages.
    pub fn stop_keeping_data(&self) {
        self.run("mqtt-down", &["--keep"]);
    }

    fn options(&self, client_id: &str, clean: bool) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", self.port);
        o.set_clean_session(clean)
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_keep_alive(Duration::from_secs(30));
        o
    }

    /// Creates a persistent session subscribed to `filter` at QoS 1, so
    /// that the broker keeps what is published for `client_id` until it
    /// connects.
    pub fn create_session(&self, client_id: &str, filter: &str) {
        let (client, mut connection) = Client::new(self.options(client_id, false), 10);
        client.subscribe(filter, QoS::AtLeastOnce).unwrap();
        for event in connection.iter() {
            if let Event::Incoming(Packet::SubAck(_)) = event.unwrap() {
                break;
            }
        }
        client.disconnect().unwrap();
        for event in connection.iter() {
            if event.is_err() || matches!(event, Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)))
            {
                break;
            }
        }
    }

    /// Publishes every message at QoS 1 and returns once the broker has
    /// acknowledged them all.
    pub fn publish(&self, client_id: &str, messages: Vec<(String, Vec<u8>)>) {
        let n = messages.len();
        let (client, mut connection) = Client::new(self.options(client_id, true), 10);
        let publisher = std::thread::spawn(move || {
            for (topic, payload) in messages {
                client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .unwrap();
            }
            client
        });
        let mut acked = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        for event in connection.iter() {
            assert!(
                Instant::now() < deadline,
                "the broker acknowledged {acked} of {n}"
            );
            if let Event::Incoming(Packet::PubAck(_)) = event.unwrap() {
                acked += 1;
                if acked == n {
                    break;
                }
            }
        }
        let client = publisher.join().unwrap();
        client.disconnect().unwrap();
        for event in connection.iter() {
            if event.is_err() || matches!(event, Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)))
            {
                break;
            }
        }
    }

    /// Resumes the persistent session of `client_id` and receives `n`
    /// messages (topic, payload), acknowledging them.
    pub fn receive(&self, client_id: &str, n: usize) -> Vec<(String, Vec<u8>)> {
        let (client, mut connection) = Client::new(self.options(client_id, false), 10);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        for event in connection.iter() {
            assert!(
                Instant::now() < deadline,
                "received {} of {n} messages in 60 s",
                got.len()
            );
            if let Event::Incoming(Packet::Publish(p)) = event.unwrap() {
                got.push((p.topic.clone(), p.payload.to_vec()));
                if got.len() == n {
                    break;
                }
            }
        }
        client.disconnect().unwrap();
        got
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new(script("mqtt-down"))
            .env("IOTQL_MQTT_PORT", self.port.to_string())
            .output();
    }
}
