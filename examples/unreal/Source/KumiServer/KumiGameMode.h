// NOT COMPILED HERE. Illustrative Unreal Engine 5 dedicated-server code; see ../../README.md.
#pragma once

#include "CoreMinimal.h"
#include "GameFramework/GameModeBase.h"
#include "KumiServerToken.h"
#include "KumiGameMode.generated.h"

/** Admits only clients that present a valid, unused kumi server token for this server. */
UCLASS()
class AKumiGameMode : public AGameModeBase
{
	GENERATED_BODY()
public:
	virtual void InitGame(const FString& MapName, const FString& Options, FString& ErrorMessage) override;
	virtual void PreLogin(const FString& Options, const FString& Address, const FUniqueNetIdRepl& UniqueId, FString& ErrorMessage) override;
	virtual FString InitNewPlayer(APlayerController* NewPlayerController, const FUniqueNetIdRepl& UniqueId, const FString& Options, const FString& Portal) override;

private:
	FKumiServerTokenVerifier Verifier;
	TMap<FString, FKumiServerClaims> Admitted; // token -> claims, from PreLogin to InitNewPlayer
};
