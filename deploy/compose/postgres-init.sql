-- One database per service (the services own their data), created on the server's first start.
CREATE DATABASE user_service;
CREATE DATABASE product_service;
CREATE DATABASE order_service;
CREATE DATABASE payment_service;
CREATE DATABASE notification_service;
CREATE DATABASE event_store;
-- `make dev-up` against these servers runs every service in one process on one database,
-- a schema each.
CREATE DATABASE platform;
