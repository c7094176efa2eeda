/* Test plugin: a shared object that exports no operator definition. */
__attribute__((visibility("default"))) int not_an_operator = 1;
