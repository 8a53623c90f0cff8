//! mosquitto
