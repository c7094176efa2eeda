#ifndef RS_SIM_CMD_H
#define RS_SIM_CMD_H
/* `recstream simulate`: argv[0] is "simulate". Returns the exit status:
 * 0 done, 1 runtime failure, 2 bad usage. `recstream simulate --help`. */
int rs_cmd_simulate(int argc, char **argv);
#endif
