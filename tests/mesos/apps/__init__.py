"""Small programs the Mesos driver tests run as executors."""
