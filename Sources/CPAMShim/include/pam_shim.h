#ifndef TWOFACTOR_PAM_SHIM_H
#define TWOFACTOR_PAM_SHIM_H
#define PAM_SM_AUTH
#include <security/pam_appl.h>
#include <security/pam_modules.h>
#endif
