"""The HTTP surface: thin routes over the services, errors mapped once."""
