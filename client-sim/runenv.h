/*
 * runenv.h - follow a running `make run`: broker-config/stack writes the
 * ports it opened to <run folder>/env (shell syntax, NAME=value lines), and
 * phone-sim takes from there what its own environment does not say, so a
 * stack on other ports is followed without retyping them.
 */
#ifndef PIZZA_RUNENV_H
#define PIZZA_RUNENV_H

/*
 * Reads $PIZZA_RUN_DIR/env (./run/env when PIZZA_RUN_DIR is unset or empty)
 * and sets each of PIZZA_MQTT_PORT and PIZZA_HTTP_PORT found there with a
 * valid port number, unless the environment has it already (set, even
 * empty, wins).  Every other line is ignored.  Returns how many it set: 0
 * also when there is no such file (no stack running) or it cannot be read.
 */
int runenv_load(void);

#endif
