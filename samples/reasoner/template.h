/* template.h - the Qwen3 chat template text stored as tokenizer.chat_template. */
#ifndef RZ_TEMPLATE_H
#define RZ_TEMPLATE_H

extern const char rz_chat_template[];

#endif
